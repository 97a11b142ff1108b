"""A service stopped with SIGTERM writes its last log lines before it exits."""

from __future__ import annotations

import json

import pytest

from linkdesk.processes import SERVICES, Stack


@pytest.mark.parametrize("name", SERVICES)
def test_sigterm_keeps_last_lines(stack: Stack, name: str) -> None:
    replica = stack.add_replica(name)
    replica.start()
    replica.wait_ready(timeout=60.0)

    replica.stop()

    lines = [json.loads(line) for line in replica.log_path.read_text().splitlines()]
    events = [line.get("event") for line in lines]
    assert "service_ready" in events
    assert "service_stopped" in events
    assert lines[-1]["message"].startswith("Finished server process")
