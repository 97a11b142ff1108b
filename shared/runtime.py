"""Run a service's Litestar app under uvicorn with one ready and one stop line.

uvicorn turns SIGTERM and SIGINT into a graceful shutdown that runs the
app's lifespan exit, where each service drains NATS and closes its pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Iterator
from types import FrameType

import uvicorn
from litestar import Litestar

from shared import logs
from shared.httptools_protocol import LimitedHttpToolsProtocol
from shared.settings import env_trusted_proxies

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: str) -> None:
        super().__init__(config)
        self.service = service
        self._serving: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._serving = asyncio.current_task()
        try:
            await super().serve(sockets)
        except asyncio.CancelledError:
            if self.started or not self._captured_signals:
                raise
            logger.info(
                "service stopped before it was ready",
                extra={"event": "service_stopped", "ready": False},
            )
            logs.flush()
            # As uvicorn ends after a stop: by the signal it received. The
            # default action, because asyncio's own SIGINT handler would
            # only cancel this task once more.
            received = self._captured_signals[-1]
            signal.signal(received, signal.SIG_DFL)
            signal.raise_signal(received)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn reads the flag only once the app has started. A start that
        # waits for NATS or PostgreSQL to come up would otherwise ignore
        # SIGTERM until the kill that follows it.
        if self._serving is not None:
            self._serving.get_loop().call_soon_threadsafe(self._cancel_waiting_start)

    def _cancel_waiting_start(self) -> None:
        # Checked here, in the loop, not in the signal handler: once the app
        # has started, uvicorn's own stop runs its shutdown, which a cancel
        # would cut short.
        if self._serving is None or self.started:
            return
        startup = getattr(getattr(self, "lifespan", None), "startup_event", None)
        if isinstance(startup, asyncio.Event) and startup.is_set():
            return
        self._serving.cancel()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            # Most of what the start built lives as long as the process. Out
            # of the collector's reach, it no longer makes every full
            # collection scan it: in the gateway under load, such a
            # collection paused all requests for about 32 ms before and for
            # about 1 ms after. The collection first keeps start-up garbage
            # out of the frozen set. NOTE: a cycle among the frozen objects
            # that becomes garbage later is never collected.
            gc.collect()
            gc.freeze()
            logger.info(
                "service ready",
                extra={
                    "event": "service_ready",
                    "http": f"http://{self.config.host}:{self.config.port}",
                },
            )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # On leaving, uvicorn raises the captured SIGTERM again, which ends
        # the process before the event loop runs another step, so the log
        # lines of the last step are written here.
        with super().capture_signals():
            try:
                yield
            finally:
                logs.flush()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Logged here rather than after run() returns, because uvicorn
        # re-raises the captured SIGTERM once shutdown is done.
        await super().shutdown(sockets)
        logger.info("service stopped", extra={"event": "service_stopped"})


MAX_REQUEST_HEAD_BYTES = 256 * 1024
"""Largest request line plus headers that a service reads.

The gateway must read a link with a 100 KB query to answer it with the
neutral 404 page. `HTTP_PROTOCOL` applies this limit through uvicorn's
`h11_max_incomplete_event_size` setting and sends a plain 400 above it.
"""

HTTP_PROTOCOL = LimitedHttpToolsProtocol
"""uvicorn's httptools protocol, changed to read request targets over
httptools' 64 KiB URL limit and to apply `MAX_REQUEST_HEAD_BYTES`.

With it the gateway used about 65 µs less CPU per GET of a link than with
h11, and served 14 to 20% more of them (wrk through the whole stack on a
2-core machine)."""


def serve(service: str, app: Litestar, host: str, port: int) -> None:
    """Serve `app` until SIGTERM or SIGINT."""
    logger.info("service starting", extra={"event": "service_starting", "port": port})
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        loop="auto",
        http=HTTP_PROTOCOL,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        lifespan="on",
        timeout_graceful_shutdown=10,
        # Read here rather than left to uvicorn, so that a mistyped entry
        # stops the start, and the default is the same in every uvicorn
        # release.
        forwarded_allow_ips=env_trusted_proxies("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
    )
    _Server(config, service).run()


def main(service: str, build_app: object, host: str, port: int) -> None:
    """Configure logging, build the app and serve it."""
    logs.configure(service)
    assert callable(build_app)
    serve(service, build_app(), host, port)
