"""A known secret and signing key leak nowhere they are not meant to be.

One flow opens, submits and confirms forms through a raw link and a signed
link, and sends invalid links with the same secret. Then every log file of
every service process, every message on every JetStream stream (tickets and
the gateway's key-value bucket), every message on NATS during the flow,
every row of every table in every schema, and every response are searched
for the secret, its percent-encoded form, its first 12 characters, its
SHA-256 digest, the signing key and the link's signature.

The secret itself appears nowhere. The only places allowed are the ones the
design needs: the `ResolveSecret` request and the `tenant.link_secrets`
table carry the secret's digest, the `VerifySignedLink` request carries the
signature, and the `tenant.signing_keys` table keeps the key so that the
tenant service can check signatures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import nats
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from linkdesk.processes import Stack
from shared import messages, messaging, signed_link, subjects
from tests.helpers import LINK_PATH, VALID_FIELDS, Admin, form_token, post_form

FLOW_TIMEOUT = 60.0


@dataclass
class Secrets:
    secret: str
    key: str
    signature: str = ""

    def needles(self) -> dict[str, str]:
        found = {
            "secret": self.secret,
            "percent-encoded secret": quote(self.secret, safe=""),
            "secret prefix": self.secret[:12],
            "secret digest": messages.secret_sha256(self.secret),
            "signing key": self.key,
        }
        if self.signature:
            found["signature"] = self.signature
        return found


@dataclass
class Captured:
    responses: list[httpx.Response] = field(default_factory=list)
    messages: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)


def drive_flow(stack: Stack, admin: Admin, known: Secrets, tenant_id: str) -> Captured:
    """Open, submit and confirm through both kinds of link, and send invalid
    links; return every response."""
    captured = Captured()
    with httpx.Client(base_url=stack.url("gateway"), timeout=10) as gateway:

        def keep(response: httpx.Response) -> httpx.Response:
            captured.responses.append(response)
            return response

        raw = f"{LINK_PATH}?{quote(known.secret, safe='')}&004711"
        page = keep(gateway.get(raw))
        assert page.status_code == 200
        invalid = keep(post_form(gateway, form_token(page), {"subject": ""}))
        assert invalid.status_code == 400
        redirect = keep(post_form(gateway, form_token(invalid)))
        assert redirect.status_code == 303
        keep(gateway.get(redirect.headers["location"]))

        claims = signed_link.Claims(
            tenant_id, "004711", int(time.time()) + 300, "Haus B", "IT"
        )
        issued = admin.tenants.get(f"/admin/tenants/{tenant_id}/signing-keys").json()
        token = signed_link.sign(issued[0]["id"], known.key, claims)
        known.signature = token.rsplit(".", 1)[1]
        signed = keep(gateway.get(f"{LINK_PATH}?sig={token}"))
        assert signed.status_code == 200
        accepted = keep(post_form(gateway, form_token(signed), VALID_FIELDS))
        assert accepted.status_code == 303
        keep(gateway.get(accepted.headers["location"]))

        encoded = quote(known.secret, safe="")
        for target in (
            f"{LINK_PATH}?{encoded}&999999",
            f"{LINK_PATH}?{encoded}",
            f"{LINK_PATH}?{encoded}&004711&x=1",
            f"{LINK_PATH}?secret={encoded}&number=004711",
            f"{LINK_PATH}?{encoded}&J%F6rg",
            f"{LINK_PATH}?sig={token[:-2]}AA",
        ):
            assert keep(gateway.get(target)).status_code == 404
    admin.wait_for_tickets(tenant_id, 2)
    return captured


def holders(text: str | bytes, known: Secrets) -> list[str]:
    data = text.encode("utf-8", errors="replace") if isinstance(text, str) else text
    return [name for name, value in known.needles().items() if value.encode() in data]


async def stream_messages(nc: nats.NATS) -> list[tuple[str, str, bytes]]:
    """Return (stream, subject, data and headers) of every stored message."""
    js = nc.jetstream(timeout=5)
    found: list[tuple[str, str, bytes]] = []
    streams = [info.config.name for info in await js.streams_info()]
    assert subjects.TICKET_STREAM in streams
    for stream in streams:
        assert stream is not None
        info = await js.stream_info(stream)
        total = info.state.messages
        if not total:
            continue
        subscription = await js.subscribe(
            ">",
            stream=stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            for _ in range(total):
                msg = await subscription.next_msg(timeout=5)
                headers = repr(msg.headers or {}).encode()
                found.append((stream, msg.subject, (msg.data or b"") + headers))
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await subscription.unsubscribe()
    return found


async def table_rows_with(database_url: str, value: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        assert len(tables) >= 5, f"only {len(tables)} tables found"
        holding: dict[str, int] = {}
        for table in tables:
            name = f'"{table["table_schema"]}"."{table["table_name"]}"'
            count = await connection.fetchval(
                f"SELECT count(*) FROM {name} AS t WHERE strpos(t::text, $1) > 0",
                value,
            )
            if count:
                holding[f"{table['table_schema']}.{table['table_name']}"] = count
        return holding
    finally:
        await connection.close()


async def test_secret_and_key_leak_nowhere(
    stack: Stack, admin: Admin, nats_url: str, database_url: str
) -> None:
    tenant = admin.create_tenant_with_person("004711", "Jörg Bäcker")
    issued = admin.tenants.post(f"/admin/tenants/{tenant.id}/signing-keys")
    assert issued.status_code == 201
    known = Secrets(secret=tenant.secret, key=issued.json()["key"])

    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    captured_messages: list[tuple[str, bytes, str]] = []

    async def capture(msg: Msg) -> None:
        captured_messages.append((msg.subject, msg.data, repr(msg.headers or {})))

    try:
        wiretap = await nc.subscribe(">", cb=capture)
        captured = await asyncio.wait_for(
            asyncio.to_thread(drive_flow, stack, admin, known, tenant.id),
            FLOW_TIMEOUT,
        )
        await nc.flush(timeout=5)
        await wiretap.unsubscribe()
        stored = await stream_messages(nc)
    finally:
        await nc.close()

    # NATS during the flow: the secret never travels, and only the lookups
    # that need them carry the digest and the signature.
    assert captured_messages, "the wiretap saw no NATS traffic"
    allowed_subjects = {
        "secret digest": subjects.TENANT_RESOLVE_SECRET,
        "signature": subjects.TENANT_VERIFY_SIGNED_LINK,
    }
    seen: set[str] = set()
    for subject, data, headers in captured_messages:
        for name in holders(data + headers.encode(), known):
            assert subject == allowed_subjects.get(name), (name, subject)
            seen.add(name)
    # The search finds what is there: the lookups did carry both.
    assert seen == {"secret digest", "signature"}

    for stream, subject, data in stored:
        assert holders(data, known) == [], (stream, subject)

    for response in captured.responses:
        head = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        assert holders(head, known) == [], (response.url.path, "headers")
        assert holders(response.content, known) == [], (response.url.path, "body")
        assert holders(str(response.headers.get("location", "")), known) == []

    log_files = sorted(stack.log_dir.glob("*.log"))
    assert {"gateway.log", "tenant.log", "personnel.log", "ticket.log"} <= {
        path.name for path in log_files
    }
    for path in log_files:
        assert holders(path.read_bytes(), known) == [], path.name

    stored_by_design: dict[str, dict[str, Any]] = {
        "signing key": {"tenant.signing_keys": 1},
        # A bytea column's text form is `\x` and the lowercase hex digits.
        "secret digest": {"tenant.link_secrets": 1},
    }
    for name, value in known.needles().items():
        rows = await table_rows_with(database_url, value)
        assert rows == stored_by_design.get(name, {}), name


async def test_resolve_secret_accepts_only_digest(admin: Admin, nats_url: str) -> None:
    tenant = admin.create_tenant_with_person("004711", "Jörg Bäcker")
    digest = messages.secret_sha256(tenant.secret)
    nc = await messaging.connect([nats_url], "test-resolve-secret")

    async def resolve(value: str) -> messages.TenantResolved:
        return await messaging.request(
            nc,
            subjects.TENANT_RESOLVE_SECRET,
            messages.ResolveSecret(secret_sha256=value),
            messages.TenantResolved,
            timeout=5.0,
        )

    try:
        found = await resolve(digest)
        not_digests = {
            "the secret itself": tenant.secret,
            "uppercase hex": digest.upper(),
            "63 digits": digest[:-1],
            "65 digits": digest + "0",
            "non-hex digit": "g" + digest[1:],
            "empty": "",
        }
        rejected = {name: await resolve(value) for name, value in not_digests.items()}
    finally:
        await nc.close()

    assert found.tenant is not None
    assert found.tenant.tenant_id == tenant.id
    assert found.secret_id == tenant.secret_id
    for name, reply in rejected.items():
        assert reply.tenant is None, name
        assert reply.reason == "unknown_secret", name
