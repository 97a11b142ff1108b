"""The cost of `sync_interval: always`, the compose default.

JetStream normally acknowledges a write before it reaches the disk and
syncs every two minutes. The compose file's nats-server configuration syncs
every write instead, so that a confirmed ticket survives a power loss. This
measures acknowledged publishes against a second nats-server with that
setting, to compare with the default server's figures.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench import micro
from shared.embedded import LOOPBACK, free_port, nats_server_binary

STORE_FOLDER = "nats-sync-always"
"""Folder in the run's working folder of this baseline's nats-server."""

CONFIG = """\
listen: {host}:{port}
http: {host}:{monitor}
server_name: bench-sync-always
jetstream {{
  store_dir: "{store}"
  sync_interval: always
}}
"""


def _wait_healthy(monitor: int, deadline: float) -> None:
    url = f"http://{LOOPBACK}:{monitor}/healthz?js-enabled-only=true"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    msg = "nats-server with sync_interval always did not become ready"
    raise RuntimeError(msg)


def sync_always_rates(work: Path, count: int, max_seconds: float) -> list[micro.Rate]:
    """Return JetStream publish rates at 1 and 64 in flight with every write
    synced to disk."""
    folder = work / STORE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    port, monitor = free_port(), free_port()
    config = folder / "server.conf"
    config.write_text(
        CONFIG.format(
            host=LOOPBACK, port=port, monitor=monitor, store=folder / "jetstream"
        )
    )
    with (folder / "nats-server.log").open("ab") as log:
        server = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(monitor, time.monotonic() + 20)
        url = f"nats://{LOOPBACK}:{port}"
        rates = [
            asyncio.run(micro.jetstream_publish(url, count, clients, max_seconds))
            for clients in (1, 64)
        ]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    return [
        micro.Rate(
            "JetStream publish, sync_interval always",
            rate.operations,
            rate.seconds,
            rate.concurrency,
        )
        for rate in rates
    ]
