"""The admin APIs' response to values that fail validation names each field,
on a Litestar app without NATS or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.exceptions import ValidationException
from litestar.testing import TestClient

from shared import admin_api, validation_errors


class Person(msgspec.Struct, forbid_unknown_fields=True):
    personnel_number: str
    name: str
    active: bool = True


@post("/people")
async def create_person(data: Person) -> dict[str, str]:
    return {"name": data.name}


@get("/tickets")
async def list_tickets(limit: int) -> dict[str, int]:
    return {"limit": limit}


@get("/own")
async def own_check() -> None:
    raise ValidationException(detail="status 'lost' is unknown; use one of new, done")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    app = Litestar(
        [create_person, list_tickets, own_check],
        exception_handlers=admin_api.EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_class=admin_api.JsonBodyRequest,
    )
    with TestClient(app) as test_client:
        yield test_client


def rejected(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_empty_body_says_what_to_send(client: TestClient[Litestar]) -> None:
    answer = rejected(
        client.post(
            "/people", content=b"", headers={"content-type": "application/json"}
        )
    )

    assert answer["detail"] == (
        f"Validation failed for POST /people: {validation_errors.EMPTY_BODY}"
    )
    assert answer["extra"][0]["message"] == validation_errors.EMPTY_BODY
    assert answer["extra"][0]["key"] == "data"


def test_wrong_type_names_the_field(client: TestClient[Litestar]) -> None:
    answer = rejected(
        client.post("/people", json={"personnel_number": "004711", "name": 7})
    )

    assert answer["detail"] == (
        "Validation failed for POST /people: name: Expected `str`, got `int`"
    )
    assert answer["extra"] == [
        {"message": "Expected `str`, got `int`", "key": "name", "source": "body"}
    ]


def test_missing_field_is_named(client: TestClient[Litestar]) -> None:
    answer = rejected(client.post("/people", json={"name": "Jörg"}))

    assert "missing required field `personnel_number`" in answer["detail"]


def test_query_parameter_is_named(client: TestClient[Litestar]) -> None:
    answer = rejected(client.get("/tickets", params={"limit": "many"}))

    assert "limit: " in answer["detail"]
    assert answer["extra"][0]["key"] == "limit"


def test_own_detail_is_kept(client: TestClient[Litestar]) -> None:
    answer = rejected(client.get("/own"))

    assert answer == {
        "status_code": 400,
        "detail": "status 'lost' is unknown; use one of new, done",
    }


def test_detail_cuts_long_lists() -> None:
    errors = [{"key": f"field{n}", "message": "bad"} for n in range(8)]
    exc = ValidationException(detail="Validation failed for POST /x", extra=errors)

    response = validation_errors.validation_error_handler(None, exc)  # type: ignore[arg-type]

    assert isinstance(response.content, dict)
    detail = str(response.content["detail"])
    assert "field4: bad" in detail
    assert "field5" not in detail
    assert detail.endswith("; and 3 more (see extra)")
    assert response.content["extra"] == errors
