"""The public link through HTTP against the running stack.

Every invalid link, whatever the reason, must get the same 404: same status,
same body bytes and same headers apart from `date`, so that a response never
reveals which part of a link was wrong. The reason goes to the gateway's log,
and neither the secret nor the raw query string may reach any log.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import nats
import pytest
from nats.js import JetStreamContext

from linkdesk.processes import Stack
from tests.helpers import (
    LINK_PATH,
    Admin,
    TenantFixture,
    form_token,
    open_link,
    post_form,
)

OTHER_LINK_PATH = "/public/TicketAllgemein/Ticket.aspx"
UNKNOWN_SECRET = "k7Q2xLm9Rt4vZp1W"
SOCKET_TIMEOUT = 10.0
LOG_TIMEOUT = 5.0


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def headers_without_date(self) -> list[tuple[str, str]]:
        return [(name, value) for name, value in self.headers if name != "date"]

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


def raw_get(stack: Stack, target: str) -> RawResponse:
    """Send `GET target` byte for byte and read the whole response.

    httpx rejects URLs over 65,536 characters, and a plain socket also shows
    the headers in the order the server sent them. With `Connection: close`
    the server ends the response by closing the connection.
    """
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    port = stack.services["gateway"].port
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as conn:
        conn.sendall(request)
        # Bounded in count as well, in case the server never closes.
        for _ in range(10_000):
            chunk = conn.recv(65_536)
            if not chunk:
                break
            chunks.append(chunk)
    head, separator, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert separator, f"incomplete response to {target[:80]}: {head[:200]!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    response = RawResponse(int(status_line.split(" ")[1]), headers, body)
    length = response.header("content-length")
    assert length is not None
    assert int(length) == len(body)
    return response


def link_target(secret: str, number: str, path: str = LINK_PATH) -> str:
    return f"{path}?{quote(secret, safe='')}&{quote(number, safe='')}"


def read_log_lines(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    """Return the JSON log lines written at or after byte `offset`."""
    with path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode("utf-8", errors="replace")
    lines = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


def wait_for_log_events(
    path: Path, offset: int, event: str, count: int
) -> list[dict[str, Any]]:
    """Poll the log until `count` lines of `event` follow `offset`."""
    deadline = time.monotonic() + LOG_TIMEOUT
    while True:
        found = [
            line for line in read_log_lines(path, offset) if line.get("event") == event
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def create_tenant(admin: Admin, people: dict[str, str]) -> TenantFixture:
    """Create a tenant with intake on, one secret and `people` by number."""
    tenant = admin.create_tenant()
    issued = admin.issue_secret(tenant["id"])
    for number, name in people.items():
        admin.add_person(tenant["id"], number, name)
    return TenantFixture(
        id=tenant["id"],
        secret=issued["secret"],
        secret_id=issued["info"]["id"],
        personnel_number=next(iter(people)),
    )


class AssetCollector(HTMLParser):
    """Collects every URL-valued attribute of a page and its script tags."""

    URL_ATTRIBUTES = frozenset(
        {"src", "href", "action", "formaction", "srcset", "poster", "data", "content"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if name in self.URL_ATTRIBUTES and value is not None:
                self.urls.append((tag, name, value))


def external_urls(page: str) -> list[tuple[str, str, str]]:
    collector = AssetCollector()
    collector.feed(page)
    collector.close()
    return [
        (tag, name, value)
        for tag, name, value in collector.urls
        if "//" in value or value.lower().startswith(("http:", "https:", "data:"))
    ]


# Invalid links


@dataclass(frozen=True)
class InvalidLink:
    target: str
    reason: str


@pytest.fixture(scope="module")
def invalid_links(admin: Admin) -> dict[str, InvalidLink]:
    """Every kind of invalid link, each with the reason the log must name."""
    main = create_tenant(admin, {"004711": "Jörg Bäcker", "000815": "Ex Mitarbeiter"})
    admin.update_person(main.id, "000815", active=False)
    # Tenant B: the only tenant with the number 777777.
    create_tenant(admin, {"777777": "Nur Anderswo"})
    revoked = create_tenant(admin, {"004711": "Rita Widerruf"})
    admin.revoke_secret(revoked.id, revoked.secret_id)
    closed = create_tenant(admin, {"004711": "Gesa Geschlossen"})
    admin.update_tenant(closed.id, intake_enabled=False)

    secret = quote(main.secret, safe="")
    links = {
        "one-value": InvalidLink(f"{LINK_PATH}?{secret}", "wrong_part_count"),
        "leading-amp": InvalidLink(f"{LINK_PATH}?&{secret}&004711", "wrong_part_count"),
        "three-values": InvalidLink(
            f"{LINK_PATH}?{secret}&004711&004711", "wrong_part_count"
        ),
        "swapped": InvalidLink(f"{LINK_PATH}?004711&{secret}", "unknown_secret"),
        "extra-parameter": InvalidLink(
            f"{LINK_PATH}?{secret}&004711&x=1", "wrong_part_count"
        ),
        "trailing-amp": InvalidLink(
            f"{LINK_PATH}?{secret}&004711&", "wrong_part_count"
        ),
        "key-value": InvalidLink(
            f"{LINK_PATH}?secret={secret}&number=004711", "named_parameter"
        ),
        "empty-query": InvalidLink(f"{LINK_PATH}?", "empty_query"),
        "no-query": InvalidLink(LINK_PATH, "empty_query"),
        "unknown-number": InvalidLink(
            link_target(main.secret, "999999"), "unknown_person"
        ),
        "unknown-secret": InvalidLink(
            link_target(UNKNOWN_SECRET, "004711"), "unknown_secret"
        ),
        "revoked-secret": InvalidLink(
            link_target(revoked.secret, "004711"), "revoked_secret"
        ),
        "inactive-person": InvalidLink(
            link_target(main.secret, "000815"), "inactive_person"
        ),
        "number-of-other-tenant": InvalidLink(
            link_target(main.secret, "777777"), "unknown_person"
        ),
        "intake-off": InvalidLink(
            link_target(closed.secret, "004711"), "intake_disabled"
        ),
        "encoded-slash": InvalidLink(f"{LINK_PATH}?{secret}&00%2F47", "unknown_person"),
        "empty-number": InvalidLink(f"{LINK_PATH}?{secret}&", "empty_personnel_number"),
        "blank-number": InvalidLink(
            f"{LINK_PATH}?{secret}&%20%20", "empty_personnel_number"
        ),
        "ten-thousand-digits": InvalidLink(
            f"{LINK_PATH}?{secret}&{'1' * 10_000}", "query_too_long"
        ),
        "latin1-number": InvalidLink(
            f"{LINK_PATH}?{secret}&J%F6rg", "invalid_encoding"
        ),
        "invalid-escape": InvalidLink(
            f"{LINK_PATH}?{secret}&%ZZ4711", "invalid_encoding"
        ),
        "control-character": InvalidLink(
            f"{LINK_PATH}?{secret}&0047%0011", "control_character"
        ),
        "other-path-unknown-number": InvalidLink(
            link_target(main.secret, "999999", OTHER_LINK_PATH), "unknown_person"
        ),
        HUNDRED_KILOBYTES: InvalidLink(
            f"{LINK_PATH}?{secret}&{'0' * 100 * 1024}", "query_too_long"
        ),
    }
    assert set(links) == {*CASE_NAMES, HUNDRED_KILOBYTES}
    return links


CASE_NAMES = (
    "one-value",
    "leading-amp",
    "three-values",
    "swapped",
    "extra-parameter",
    "trailing-amp",
    "key-value",
    "empty-query",
    "no-query",
    "unknown-number",
    "unknown-secret",
    "revoked-secret",
    "inactive-person",
    "number-of-other-tenant",
    "intake-off",
    "encoded-slash",
    "empty-number",
    "blank-number",
    "ten-thousand-digits",
    "latin1-number",
    "invalid-escape",
    "control-character",
    "other-path-unknown-number",
)
"""Invalid links that reach the gateway app, which logs their reason."""

HUNDRED_KILOBYTES = "hundred-kilobytes"


@pytest.fixture(scope="module")
def neutral_answer(stack: Stack) -> RawResponse:
    """The reference 404: a link with one value and no tenant behind it."""
    return raw_get(stack, f"{LINK_PATH}?{UNKNOWN_SECRET}")


def test_neutral_answer_is_plain_404(neutral_answer: RawResponse) -> None:
    assert neutral_answer.status == 404
    assert "Dieser Link ist ungültig".encode() in neutral_answer.body
    assert b"This link is not valid" in neutral_answer.body
    assert neutral_answer.header("content-type") == "text/html; charset=utf-8"
    assert neutral_answer.header("date") is not None


@pytest.mark.parametrize("case", [*CASE_NAMES, HUNDRED_KILOBYTES])
def test_invalid_link_gets_identical_404(
    running_stack: Stack,
    invalid_links: dict[str, InvalidLink],
    neutral_answer: RawResponse,
    case: str,
) -> None:
    answer = raw_get(running_stack, invalid_links[case].target)
    assert answer.status == neutral_answer.status
    assert answer.body == neutral_answer.body
    assert answer.headers_without_date() == neutral_answer.headers_without_date()


@pytest.mark.parametrize("case", CASE_NAMES)
def test_invalid_link_logs_reason(
    running_stack: Stack, invalid_links: dict[str, InvalidLink], case: str
) -> None:
    log_path = running_stack.services["gateway"].log_path
    offset = log_path.stat().st_size

    answer = raw_get(running_stack, invalid_links[case].target)
    assert answer.status == 404

    rejections = wait_for_log_events(log_path, offset, "link_rejected", 1)
    assert [line.get("reason") for line in rejections] == [invalid_links[case].reason]
    assert rejections[0].get("level") == "info"


# Valid links and leading zeros


@pytest.mark.parametrize("path", [LINK_PATH, OTHER_LINK_PATH])
def test_valid_link_opens_form(
    gateway: httpx.Client, tenant: TenantFixture, path: str
) -> None:
    page = open_link(gateway, tenant.link_query(), path=path)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "Jörg Bäcker" in page.text
    assert '<dd translate="no">004711</dd>' in page.text
    assert form_token(page)


@pytest.mark.parametrize(
    ("path", "method", "allow"),
    [
        (LINK_PATH, "POST", "GET, OPTIONS"),
        (LINK_PATH, "PUT", "GET, OPTIONS"),
        (LINK_PATH, "HEAD", "GET, OPTIONS"),
        ("/public/tickets", "GET", "OPTIONS, POST"),
        ("/public/tickets", "DELETE", "OPTIONS, POST"),
    ],
)
def test_other_methods_get_405(
    gateway: httpx.Client, tenant: TenantFixture, path: str, method: str, allow: str
) -> None:
    answer = gateway.request(method, f"{path}?{tenant.link_query()}")
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow


@pytest.mark.parametrize(
    ("path", "allow"),
    [(LINK_PATH, "GET, OPTIONS"), ("/public/tickets", "OPTIONS, POST")],
)
def test_options_lists_methods(gateway: httpx.Client, path: str, allow: str) -> None:
    answer = gateway.options(path)
    assert answer.status_code == 204
    assert answer.headers["allow"] == allow
    assert answer.content == b""


def test_leading_zeros_pick_different_people(
    gateway: httpx.Client, admin: Admin
) -> None:
    both = create_tenant(admin, {"004711": "Anna Nullmeier", "4711": "Bruno Viermann"})

    with_zeros = open_link(gateway, both.link_query("004711"))
    assert with_zeros.status_code == 200
    assert "Anna Nullmeier" in with_zeros.text
    assert "Bruno Viermann" not in with_zeros.text
    assert '<dd translate="no">004711</dd>' in with_zeros.text

    without_zeros = open_link(gateway, both.link_query("4711"))
    assert without_zeros.status_code == 200
    assert "Bruno Viermann" in without_zeros.text
    assert "Anna Nullmeier" not in without_zeros.text
    assert '<dd translate="no">4711</dd>' in without_zeros.text


@pytest.mark.parametrize(
    "number",
    [
        "4711",
        "04711",
        "0004711",
        pytest.param("\uff10\uff10\uff14\uff17\uff11\uff11", id="full-width-digits"),
    ],
)
def test_number_without_exact_match_rejected(
    running_stack: Stack,
    admin: Admin,
    neutral_answer: RawResponse,
    number: str,
) -> None:
    only_zeros = create_tenant(admin, {"004711": "Anna Nullmeier"})
    answer = raw_get(running_stack, link_target(only_zeros.secret, number))
    assert answer.status == 404
    assert answer.body == neutral_answer.body


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield nc.jetstream(timeout=5.0)
    finally:
        await nc.close()


async def test_leading_zeros_stay_text_end_to_end(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    both = create_tenant(admin, {"004711": "Anna Nullmeier", "4711": "Bruno Viermann"})

    for number in ("004711", "4711"):
        page = open_link(gateway, both.link_query(number))
        answer = post_form(gateway, form_token(page))
        assert answer.status_code == 303
        event = await jetstream.get_last_msg(
            "TICKETS", f"tickets.v1.{both.id}.submitted"
        )
        assert event.data is not None
        assert f'"personnel_number":"{number}"'.encode() in event.data
        assert json.loads(event.data)["data"]["personnel_number"] == number

    tickets = admin.wait_for_tickets(both.id, 2)
    assert sorted(ticket["personnel_number"] for ticket in tickets) == [
        "004711",
        "4711",
    ]
    names = {ticket["personnel_number"]: ticket["reporter_name"] for ticket in tickets}
    assert names == {"004711": "Anna Nullmeier", "4711": "Bruno Viermann"}

    raw_output = admin.tickets.get(f"/admin/tenants/{both.id}/tickets")
    assert raw_output.status_code == 200
    assert b'"personnel_number":"004711"' in raw_output.content
    assert b'"personnel_number":"4711"' in raw_output.content

    people = admin.personnel.get(f"/admin/tenants/{both.id}/people")
    assert people.status_code == 200
    assert b'"personnel_number":"004711"' in people.content
    assert b'"personnel_number":"4711"' in people.content


# Headers, assets and the redirect


def submit_ticket(
    gateway: httpx.Client, tenant: TenantFixture
) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
    """Open the form, post it and follow the redirect by hand."""
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    redirect = post_form(gateway, form_token(page))
    assert redirect.status_code == 303
    confirmation = gateway.get(redirect.headers["location"])
    assert confirmation.status_code == 200
    return page, redirect, confirmation


def test_public_pages_send_private_headers(
    gateway: httpx.Client, tenant: TenantFixture
) -> None:
    page, redirect, confirmation = submit_ticket(gateway, tenant)
    not_found = open_link(gateway, f"{tenant.secret}&999999")
    assert not_found.status_code == 404

    for name, response in (
        ("form", page),
        ("redirect", redirect),
        ("confirmation", confirmation),
        ("not found", not_found),
    ):
        assert response.headers.get("referrer-policy") == "no-referrer", name
        assert response.headers.get("cache-control") == "no-store", name


def test_pages_load_no_third_party_assets(
    gateway: httpx.Client, tenant: TenantFixture
) -> None:
    page, _, confirmation = submit_ticket(gateway, tenant)
    not_found = open_link(gateway, f"{tenant.secret}&999999")

    for name, response in (
        ("form", page),
        ("confirmation", confirmation),
        ("not found", not_found),
    ):
        assert external_urls(response.text) == [], name
        assert "<script" not in response.text.lower(), name
        assert '<meta name="referrer" content="no-referrer">' in response.text, name
        policy = response.headers.get("content-security-policy", "")
        assert "default-src 'none'" in policy, name

    stylesheet = gateway.get("/public/static/app.css")
    assert stylesheet.status_code == 200
    css = stylesheet.text.lower()
    assert "@import" not in css
    assert "url(" not in css
    assert "@font-face" not in css


def test_redirect_hides_secret_and_number(
    gateway: httpx.Client, tenant: TenantFixture
) -> None:
    _, redirect, confirmation = submit_ticket(gateway, tenant)
    location = redirect.headers["location"]
    assert location.startswith("/public/tickets/T-")
    for value in (tenant.secret, quote(tenant.secret, safe=""), "004711"):
        assert value not in location
        assert value not in confirmation.text
    assert tenant.secret not in redirect.text


# The secret does not leak


def test_logs_never_contain_secret(
    running_stack: Stack, gateway: httpx.Client, admin: Admin
) -> None:
    tenant = create_tenant(admin, {"004711": "Jörg Bäcker", "000815": "Ex"})
    admin.update_person(tenant.id, "000815", active=False)
    query = tenant.link_query()
    encoded_secret = quote(tenant.secret, safe="")

    submit_ticket(gateway, tenant)
    # A request line of 100 KB reaches the gateway, which may not log it.
    hundred_kilobytes = f"{LINK_PATH}?{encoded_secret}&{'0' * 100 * 1024}"
    assert raw_get(running_stack, hundred_kilobytes).status == 404

    rejected_targets = [
        link_target(tenant.secret, "999999"),
        link_target(tenant.secret, "000815"),
        f"{LINK_PATH}?{encoded_secret}",
        f"{LINK_PATH}?{encoded_secret}&004711&x=1",
        f"{LINK_PATH}?secret={encoded_secret}&number=004711",
        f"{LINK_PATH}?{encoded_secret}&{'1' * 10_000}",
        f"{OTHER_LINK_PATH}?{encoded_secret}&J%F6rg",
    ]
    gateway_log = running_stack.services["gateway"].log_path
    offset = gateway_log.stat().st_size
    for target in rejected_targets:
        assert raw_get(running_stack, target).status == 404
    # The gateway logs each rejection before it sends the response.
    rejections = wait_for_log_events(
        gateway_log, offset, "link_rejected", len(rejected_targets)
    )
    assert len(rejections) == len(rejected_targets)
    admin.wait_for_tickets(tenant.id, 1)

    gateway_text = gateway_log.read_text(encoding="utf-8", errors="replace")
    assert tenant.secret not in gateway_text
    assert encoded_secret not in gateway_text
    assert query not in gateway_text
    assert tenant.secret[:12] not in gateway_text

    requests = [
        line
        for line in read_log_lines(gateway_log)
        if line.get("event") == "http_request"
        and str(line.get("path", "")).startswith(("/public/TicketAll",))
    ]
    assert requests, "the gateway wrote no access log line for the link"
    for line in requests:
        assert line["path"] in (LINK_PATH, OTHER_LINK_PATH)
        assert "?" not in line["message"]

    for name in ("tenant", "personnel", "ticket"):
        text = running_stack.services[name].log_path.read_text(
            encoding="utf-8", errors="replace"
        )
        assert tenant.secret not in text, name
        assert tenant.secret[:12] not in text, name


async def test_secret_not_stored_in_stream_or_tables(
    gateway: httpx.Client,
    admin: Admin,
    database_url: str,
    jetstream: JetStreamContext,
) -> None:
    tenant = create_tenant(admin, {"004711": "Jörg Bäcker"})
    submit_ticket(gateway, tenant)
    admin.wait_for_tickets(tenant.id, 1)

    event = await jetstream.get_last_msg("TICKETS", f"tickets.v1.{tenant.id}.submitted")
    assert event.data is not None
    assert tenant.secret.encode() not in event.data
    assert tenant.secret not in json.dumps(event.headers or {})

    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        assert tables, "no tables found"
        holding = []
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            count = await connection.fetchval(
                f"SELECT count(*) FROM {name} AS t WHERE strpos(t::text, $1) > 0",
                tenant.secret,
            )
            if count:
                holding.append(name)
        assert holding == []
    finally:
        await connection.close()


def test_access_log_shortens_long_path(running_stack: Stack) -> None:
    gateway_log = running_stack.services["gateway"].log_path
    offset = gateway_log.stat().st_size
    long_path = f"/public/{'x' * 100 * 1024}"

    assert raw_get(running_stack, long_path).status == 404

    deadline = time.monotonic() + 5
    while True:
        lines = [
            line
            for line in read_log_lines(gateway_log, offset)
            if line.get("event") == "http_request"
            and str(line.get("path", "")).startswith("/public/xxx")
        ]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [line] = lines
    assert len(line["path"]) < 300
    assert len(line["message"]) < 300
    assert gateway_log.stat().st_size - offset < 10_000
