"""`linkdesk dev` as a user runs it: start, file a ticket, Ctrl-C, start again."""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from linkdesk.processes import SERVICES
from shared.embedded import LOOPBACK, free_port, free_port_range
from tests.helpers import VALID_FIELDS, form_token, post_form

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0
"""Seconds for both servers, four services and the demo data to come up."""
STOP_TIMEOUT = 60.0
"""Seconds for the launcher to stop everything after SIGINT."""

LINK_LINE = re.compile(
    r"^\s+(http://127\.0\.0\.1:\d+/public/TicketAllgmein/Ticket\.aspx\?\S+)$"
)
SERVICE_LINE = re.compile(r"^\s+(tenant|personnel|ticket|gateway)\s+(http://\S+)$")
ADMIN_TOKEN_LINE = re.compile(r"Admin token: (\S+)")
TICKETS_URL = re.compile(r"(http://\S+/admin/tenants/[0-9a-f-]{36}/tickets)")
SUMMARY_END = re.compile(r"^\s+Logs: ")


@dataclass(frozen=True)
class Summary:
    """The launcher's output once everything runs: link, URLs and admin token."""

    link: str
    service_urls: dict[str, str]
    admin_token: str
    tickets_url: str
    text: str


class Launcher:
    """One `linkdesk dev` process and the lines of its merged stdout/stderr."""

    def __init__(self, argv: list[str]) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"NATS_URL", "DATABASE_URL", "LINKDESK_DATA_DIR"}
        }
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own session, so that only the test's SIGINT reaches it.
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def read_summary(self, timeout: float = START_TIMEOUT) -> Summary:
        """Read lines until the summary is complete, and fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no summary after {timeout:.0f} s:\n{self.output}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.process.wait(5)
                pytest.fail(f"launcher exited with {code} at start:\n{self.output}")
            self.lines.append(line)
            if SUMMARY_END.match(line):
                return self._parse_summary()

    def _parse_summary(self) -> Summary:
        links = [m.group(1) for line in self.lines if (m := LINK_LINE.match(line))]
        services = {
            m.group(1): m.group(2)
            for line in self.lines
            if (m := SERVICE_LINE.match(line))
        }
        token = ADMIN_TOKEN_LINE.search(self.output)
        tickets = TICKETS_URL.search(self.output)
        assert len(links) == 1, self.output
        assert token, self.output
        assert tickets, self.output
        return Summary(
            link=links[0],
            service_urls=services,
            admin_token=token.group(1),
            tickets_url=tickets.group(1),
            text=self.output,
        )

    def descendants(self) -> list[ProcessInfo]:
        return descendants(self.process.pid)

    def interrupt(self, timeout: float = STOP_TIMEOUT) -> int:
        """Send SIGINT as Ctrl-C would, wait for the exit and all output."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout)
        self._reader.join(10)
        self._drain()
        return code

    def _drain(self) -> None:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.lines.append(line)

    def close(self, children: list[ProcessInfo]) -> None:
        """Stop the launcher and `children` if a failed test left them running."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for child in still_alive(children):
            os.kill(child.pid, signal.SIGKILL)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass(frozen=True)
class ProcessInfo:
    """A process as /proc listed it. `start_time` distinguishes a reused pid."""

    pid: int
    start_time: int
    command: str


def _read_stat(pid: int) -> tuple[str, int, int] | None:
    """Return `(state, parent pid, start time)` from /proc, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in brackets may contain spaces, so the fields are
    # counted from the last ")": state, ppid, ..., starttime (field 22).
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def descendants(root: int) -> list[ProcessInfo]:
    """Return every process below `root`, found by the parent pids in /proc.

    /proc/<pid>/task/<tid>/children is not used because kernels built
    without CONFIG_PROC_CHILDREN lack it.
    """
    children: dict[int, list[int]] = {}
    start_times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is None:
            continue
        _, parent, start_time = stat
        children.setdefault(parent, []).append(int(entry.name))
        start_times[int(entry.name)] = start_time
    found: list[ProcessInfo] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(ProcessInfo(pid, start_times[pid], _command(pid)))
        pending.extend(children.get(pid, []))
    return found


def still_alive(processes: list[ProcessInfo]) -> list[ProcessInfo]:
    """Return the processes still running. Zombies and reused pids count as gone."""
    alive = []
    for process in processes:
        stat = _read_stat(process.pid)
        if stat is None:
            continue
        state, _, start_time = stat
        if start_time == process.start_time and state != "Z":
            alive.append(process)
    return alive


def wait_until_gone(
    processes: list[ProcessInfo], timeout: float = 15.0
) -> list[ProcessInfo]:
    """Poll until none of `processes` runs, and return those alive at `timeout`."""
    deadline = time.monotonic() + timeout
    alive = still_alive(processes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = still_alive(alive)
    return alive


def describe(processes: list[ProcessInfo]) -> list[str]:
    return [f"{process.pid} {process.command}" for process in processes]


def wait_for_ticket(
    summary: Summary, reference: str, timeout: float = 15.0
) -> dict[str, Any]:
    """Poll the printed tickets URL until `reference` is listed."""
    headers = {"Authorization": f"Bearer {summary.admin_token}"}
    deadline = time.monotonic() + timeout
    listed: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = httpx.get(summary.tickets_url, headers=headers, timeout=5.0)
        assert response.status_code == 200, response.text
        listed = list(response.json())
        for ticket in listed:
            if ticket["reference"] == reference:
                return dict(ticket)
        time.sleep(0.2)
    pytest.fail(f"ticket {reference} not listed after {timeout:.0f} s: {listed}")


def test_dev_command_runs_stops_and_restarts(tmp_path: Path) -> None:
    """`linkdesk dev` serves a working link, stops cleanly and keeps its data."""
    nats_port = free_port()
    postgres_port = free_port()
    gateway_port = free_port_range(len(SERVICES))
    argv = [
        sys.executable,
        "-m",
        "linkdesk.cli",
        "dev",
        "--data-dir",
        str(tmp_path / "data"),
        "--nats-port",
        str(nats_port),
        "--postgres-port",
        str(postgres_port),
        "--gateway-port",
        str(gateway_port),
    ]

    # First run: file a ticket through the printed link.
    first = Launcher(argv)
    children: list[ProcessInfo] = []
    try:
        summary = first.read_summary()
        children = first.descendants()
        assert f"NATS_URL=nats://{LOOPBACK}:{nats_port}" in summary.text
        assert "DATABASE_URL=postgresql://" in summary.text
        assert f"{LOOPBACK}:{postgres_port}/" in summary.text
        assert summary.service_urls == {
            "gateway": f"http://{LOOPBACK}:{gateway_port}",
            "tenant": f"http://{LOOPBACK}:{gateway_port + 1}",
            "personnel": f"http://{LOOPBACK}:{gateway_port + 2}",
            "ticket": f"http://{LOOPBACK}:{gateway_port + 3}",
        }
        assert summary.link.startswith(summary.service_urls["gateway"])
        commands = " | ".join(describe(children))
        assert "nats-server" in commands
        assert "bin/postgres" in commands
        for name in SERVICES:
            assert f"-m services.{name}" in commands

        with httpx.Client(
            base_url=summary.service_urls["gateway"],
            follow_redirects=False,
            timeout=10.0,
        ) as client:
            page = client.get(summary.link)
            assert page.status_code == 200, page.text[:500]
            answer = post_form(client, form_token(page))
        assert answer.status_code == 303, answer.text[:500]
        reference = answer.headers["location"].split("/")[-1].split("?")[0]
        ticket = wait_for_ticket(summary, reference)
        assert ticket["subject"] == VALID_FIELDS["subject"]

        assert first.interrupt() == 0, first.output
        assert "Stopped." in first.output
        leftover = wait_until_gone(children)
        assert not leftover, describe(leftover)
    finally:
        first.close(children)

    # Second run on the same data folder: same link, the ticket still there.
    second = Launcher(argv)
    children = []
    try:
        again = second.read_summary()
        children = second.descendants()
        assert again.link == summary.link
        assert again.admin_token == summary.admin_token
        wait_for_ticket(again, reference)

        assert second.interrupt() == 0, second.output
        leftover = wait_until_gone(children)
        assert not leftover, describe(leftover)
    finally:
        second.close(children)


def _dev_argv(data_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "linkdesk.cli",
        "dev",
        "--data-dir",
        str(data_dir),
        "--nats-port",
        str(free_port()),
        "--postgres-port",
        str(free_port()),
        "--gateway-port",
        str(free_port_range(len(SERVICES))),
    ]


def _read_until_summary(fd: int, timeout: float = START_TIMEOUT) -> str:
    """Read from `fd` until the summary's last line, for at most `timeout` s."""
    text = ""
    deadline = time.monotonic() + timeout
    while not any(SUMMARY_END.match(line) for line in text.splitlines()):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"no summary after {timeout:.0f} s:\n{text}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            pytest.fail(f"launcher exited at start:\n{text}")
        text += chunk.decode(errors="replace")
    return text


@pytest.mark.parametrize(
    "stop_signal", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hang-up"]
)
def test_dev_command_stops_with_its_terminal_gone(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """With its output closed, as when the terminal or a pipe goes away, the
    launcher still stops every server and service on Ctrl-C or hang-up."""
    reader, writer = os.pipe()
    process = subprocess.Popen(
        _dev_argv(tmp_path / "data"),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=writer,
        stderr=writer,
        start_new_session=True,
    )
    os.close(writer)
    children: list[ProcessInfo] = []
    try:
        _read_until_summary(reader)
        children = descendants(process.pid)
        os.close(reader)
        reader = -1

        process.send_signal(stop_signal)
        code = process.wait(STOP_TIMEOUT)

        assert code == 0
        leftover = wait_until_gone(children)
        assert not leftover, describe(leftover)
    finally:
        if reader >= 0:
            os.close(reader)
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for child in still_alive(children):
            os.kill(child.pid, signal.SIGKILL)
