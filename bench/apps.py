"""Baseline ASGI apps with none of linkdesk's logic.

`bare_app` serves a GET and a POST of a small msgspec struct. `chain_app`
does what an intake request does at the least: two NATS requests, and for
the POST also a JetStream publish, with `bench.chain_worker` answering the
requests and inserting the published messages with asyncpg.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import nats
from litestar import Litestar, Response, get, post
from nats.aio.client import Client

CHAIN_STREAM = "BENCH_CHAIN"
CHAIN_SUBJECT = "bench.chain.submitted"
CHAIN_CONSUMER = "bench-chain"
LOOKUP_SUBJECTS = ("bench.lookup.tenant", "bench.lookup.person")
PAGE = b"<!doctype html><title>form</title><form method=post></form>"


class Submission(msgspec.Struct):
    tenant: str
    person: str
    subject: str
    description: str


_decoder = msgspec.json.Decoder(Submission)


@get("/bare", sync_to_thread=False)
def bare_get() -> Response[bytes]:
    return Response(PAGE, media_type="text/html")


@post("/bare", status_code=201, sync_to_thread=False)
def bare_post(data: Submission) -> dict[str, str]:
    return {"subject": data.subject}


bare_app = Litestar([bare_get, bare_post], openapi_config=None, logging_config=None)

_connection: dict[str, Client] = {}


@asynccontextmanager
async def _nats_lifespan(app: Litestar) -> AsyncIterator[None]:
    nc = await nats.connect(os.environ["NATS_URL"])
    _connection["nc"] = nc
    try:
        yield
    finally:
        await nc.drain()


async def _lookups(nc: Client) -> None:
    for subject in LOOKUP_SUBJECTS:
        await nc.request(subject, b"{}", timeout=2.0)


@get("/chain")
async def chain_get() -> Response[bytes]:
    await _lookups(_connection["nc"])
    return Response(PAGE, media_type="text/html")


@post("/chain", status_code=201)
async def chain_post(data: Submission) -> dict[str, str]:
    nc = _connection["nc"]
    await _lookups(nc)
    await nc.jetstream().publish(
        CHAIN_SUBJECT, msgspec.json.encode(data), stream=CHAIN_STREAM
    )
    return {"subject": data.subject}


chain_app = Litestar(
    [chain_get, chain_post],
    lifespan=[_nats_lifespan],
    openapi_config=None,
    logging_config=None,
)
