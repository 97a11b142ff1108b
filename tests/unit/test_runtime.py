"""The uvicorn server that every service runs in."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
import uvicorn
from litestar import Litestar, get

from shared import runtime
from shared.embedded import LOOPBACK, free_port


@get("/")
async def hello() -> str:
    return "hello"


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_server_start_freezes_what_it_built(unfrozen: None) -> None:
    """After the start, full collections skip the objects the start made."""
    config = uvicorn.Config(
        Litestar([hello]), host=LOOPBACK, port=free_port(), log_config=None
    )
    server = runtime._Server(config, "test")
    assert gc.get_freeze_count() == 0
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            # uvicorn sets a flag, not an event, once it has started.
            while not server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
    finally:
        server.should_exit = True
        await serving
