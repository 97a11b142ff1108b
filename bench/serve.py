"""Serve a baseline app from `bench.apps` the way the services are served.

    python -m bench.serve APP PORT {h11,httptools,service}

uses the uvicorn settings of `shared.runtime.serve` with the given HTTP
protocol: uvicorn's stock h11 or httptools protocol, or `service` for the
services' own `shared.runtime.HTTP_PROTOCOL`. The event loop is uvloop when
it is installed (uvicorn's "auto").
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from bench import apps
from shared.runtime import HTTP_PROTOCOL, MAX_REQUEST_HEAD_BYTES


def main() -> None:
    app_name, port, parser = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    protocol: type[asyncio.Protocol] | str = (
        HTTP_PROTOCOL if parser == "service" else parser
    )
    config = uvicorn.Config(
        getattr(apps, app_name),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        loop="auto",
        http=protocol,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
