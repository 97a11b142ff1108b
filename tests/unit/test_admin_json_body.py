"""Unit tests for `shared.admin_api.JsonBodyRequest`: the 400 response to a
JSON body that does not decode, on a Litestar app without NATS or
PostgreSQL. The end-to-end tests in `tests/e2e/test_admin_invalid_json.py`
send the same kinds of body to the running services."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from litestar import Litestar, post
from litestar.testing import TestClient

from shared import admin_api


class PersonCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str


@post("/people")
async def create_person(data: PersonCreate) -> dict[str, str]:
    return {"name": data.name}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    app = Litestar(
        [create_person],
        exception_handlers=admin_api.EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_class=admin_api.JsonBodyRequest,
    )
    with TestClient(app) as test_client:
        yield test_client


def post_body(
    client: TestClient[Litestar],
    body: bytes,
    content_type: str = "application/json",
) -> dict[str, object]:
    response = client.post(
        "/people", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_valid_body_decodes(client: TestClient[Litestar]) -> None:
    response = client.post("/people", json={"name": "Jörg"})

    assert response.status_code == 201
    assert response.json() == {"name": "Jörg"}


def test_lone_surrogate_names_field(client: TestClient[Litestar]) -> None:
    answer = post_body(client, b'{"name": "J\\ud800rg"}')

    detail = str(answer["detail"])
    assert detail.startswith("invalid JSON in the request body: ")
    assert "$.name" in detail
    assert "\\ud800" in detail
    assert "truncated" not in detail
    assert answer["extra"] == [
        {
            "key": "$.name",
            "message": "the string at $.name contains \\ud800, a UTF-16 high "
            "surrogate escape that no low surrogate follows",
            "source": "body",
        }
    ]


def test_invalid_utf8_names_field(client: TestClient[Litestar]) -> None:
    answer = post_body(client, b'{"name": "J\xf6rg"}')

    assert "$.name" in str(answer["detail"])
    assert "not valid UTF-8" in str(answer["detail"])


def test_cut_body_names_field(client: TestClient[Litestar]) -> None:
    answer = post_body(client, b'{"name": "J')

    assert "ends inside the string at $.name" in str(answer["detail"])


def test_trailing_data_has_no_extra(client: TestClient[Litestar]) -> None:
    answer = post_body(client, b'{"name": "Jo"}{"name": "Jo"}')

    assert "more data follows" in str(answer["detail"])
    assert "extra" not in answer


def test_form_body_gets_content_type_hint(client: TestClient[Litestar]) -> None:
    answer = post_body(client, b"name=Jo", "application/x-www-form-urlencoded")

    detail = str(answer["detail"])
    assert "not JSON" in detail
    assert "Content-Type: application/json" in detail
    assert "application/x-www-form-urlencoded" in detail


def test_json_content_type_gets_no_hint(client: TestClient[Litestar]) -> None:
    answer = post_body(client, b"name=Jo")

    assert "Content-Type" not in str(answer["detail"])


def test_deep_nesting_gets_400(client: TestClient[Litestar]) -> None:
    answer = post_body(client, b"[" * 100_000)

    assert "too deeply" in str(answer["detail"])


def test_wrong_type_is_a_validation_error(client: TestClient[Litestar]) -> None:
    answer = post_body(client, b'{"name": 1}')

    assert answer["detail"] == (
        "Validation failed for POST /people: name: Expected `str`, got `int`"
    )


def test_large_body_is_explained_in_full(client: TestClient[Litestar]) -> None:
    filler = ",".join(f'"n{index}": {index}' for index in range(20_000))
    body = f'{{{filler}, "name": "J\\ud800rg"}}'.encode()
    assert len(body) > 200_000

    answer = post_body(client, body)

    assert "the string at $.name contains \\ud800" in str(answer["detail"])
