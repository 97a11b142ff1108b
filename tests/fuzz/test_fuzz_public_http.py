"""Fuzz the gateway's public endpoints over HTTP; no answer may be a 500.

Runs against the session's gateway with a fixed budget per endpoint and
reproducible examples (`derandomize`). An invalid link takes at least
`GATEWAY_INVALID_LINK_MIN_SECONDS` (0.05 s), so the link endpoint gets
fewer examples than the parsers.
"""

from __future__ import annotations

import string
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkdesk.processes import Stack
from tests.helpers import LINK_PATH

HTTP_FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Characters a request target may carry as they are (RFC 3986), plus `%`
# escapes of arbitrary bytes.
TARGET_CHARACTERS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?"
escapes = st.binary(min_size=1, max_size=3).map(
    lambda data: "".join(f"%{byte:02X}" for byte in data)
)
query_parts = st.lists(
    st.one_of(st.text(alphabet=TARGET_CHARACTERS, max_size=40), escapes), max_size=12
).map("".join)

CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "text/plain",
        "application/json",
        "",
    ]
)
HEADER_VALUES = st.text(
    alphabet=string.ascii_letters + string.digits + " -._:/;=,", max_size=60
)


@pytest.fixture(scope="module")
def public(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.url("gateway"), timeout=10, follow_redirects=False
    ) as client:
        yield client


@HTTP_FUZZ
@given(query=query_parts, path=st.sampled_from([LINK_PATH, LINK_PATH.lower()]))
def test_link_endpoint_never_500(public: httpx.Client, query: str, path: str) -> None:
    answer = public.get(httpx.URL(f"{path}?{query}"))
    assert answer.status_code < 500, (query, answer.status_code)
    assert answer.status_code in (200, 400, 404), query


@HTTP_FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=3000),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "form_token",
                        "category",
                        "subject",
                        "description",
                        "location",
                        "urgency",
                        "other",
                    ]
                ),
                st.text(max_size=300),
            ),
            max_size=25,
        ).map(lambda pairs: httpx.QueryParams(pairs).__str__().encode()),
    ),
    content_type=CONTENT_TYPES,
    origin=st.one_of(st.none(), st.just("null"), HEADER_VALUES),
    fetch_site=st.one_of(
        st.none(), st.sampled_from(["same-origin", "cross-site", "none", "x"])
    ),
)
def test_submit_endpoint_never_500(
    public: httpx.Client,
    body: bytes,
    content_type: str,
    origin: str | None,
    fetch_site: str | None,
) -> None:
    headers = {"Content-Type": content_type}
    if origin is not None:
        headers["Origin"] = origin
    if fetch_site is not None:
        headers["Sec-Fetch-Site"] = fetch_site
    answer = public.post("/public/tickets", content=body, headers=headers)
    assert answer.status_code < 500, answer.status_code
    assert answer.status_code in (400, 403, 404, 413, 415), answer.status_code


@HTTP_FUZZ
@given(
    reference=st.text(
        alphabet=TARGET_CHARACTERS.replace("/", "").replace("?", ""),
        min_size=1,
        max_size=40,
    ),
    lang=st.text(alphabet=string.ascii_letters, max_size=5),
    tenant=st.text(alphabet=string.ascii_letters + string.digits + "-._", max_size=80),
)
def test_confirmation_never_500(
    public: httpx.Client, reference: str, lang: str, tenant: str
) -> None:
    answer = public.get(
        f"/public/tickets/{reference}", params={"lang": lang, "tenant": tenant}
    )
    assert answer.status_code < 500, (reference, answer.status_code)
