"""The benchmark on services that already run: what it reads, what it checks
first, and a smoke run of its parts. No timing is checked."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from bench import run as bench_run
from bench.apps import CHAIN_STREAM
from bench.system import RUNNING_TENANT, RunningServices, RunningServicesError, System
from linkdesk.processes import Stack
from tests.own_servers import OwnStack, own_stack

ROOT = Path(__file__).resolve().parents[2]


def running_environment(stack: Stack) -> dict[str, str]:
    """The variables that `--running` reads, for the services of `stack`."""
    return {
        "LINKDESK_GATEWAY_URL": stack.url("gateway"),
        "LINKDESK_TENANT_URL": stack.url("tenant"),
        "LINKDESK_PERSONNEL_URL": stack.url("personnel"),
        "LINKDESK_TICKET_URL": stack.url("ticket"),
        "NATS_URL": stack.nats_url,
        "DATABASE_URL": stack.database_url,
        "LINKDESK_ADMIN_TOKEN": stack.admin_tokens.partition(":")[2],
        "GATEWAY_FORM_KEY": stack.form_key,
    }


EXAMPLE = {
    "LINKDESK_GATEWAY_URL": "http://127.0.0.1:8080/",
    "LINKDESK_TENANT_URL": "http://localhost:8081",
    "LINKDESK_PERSONNEL_URL": "http://[::1]:8082",
    "LINKDESK_TICKET_URL": "http://127.0.0.1:8083",
    "NATS_URL": "nats://127.0.0.1:4222",
    "DATABASE_URL": "postgresql://linkdesk:pw@127.0.0.1:55432/linkdesk",
    "LINKDESK_ADMIN_TOKEN": "admin-token",
    "GATEWAY_FORM_KEY": "form-key",
}


def test_running_services_read_from_the_environment() -> None:
    running = RunningServices.from_environment(EXAMPLE)
    assert running.urls["gateway"] == "http://127.0.0.1:8080"
    assert running.urls["personnel"] == "http://[::1]:8082"
    assert running.database_url == EXAMPLE["DATABASE_URL"]
    assert "admin-token" not in repr(running)
    assert "form-key" not in repr(running)


def test_running_services_name_every_missing_variable() -> None:
    unset = {"NATS_URL", "GATEWAY_FORM_KEY"}
    partial = {name: value for name, value in EXAMPLE.items() if name not in unset}
    with pytest.raises(RunningServicesError, match="set NATS_URL, GATEWAY_FORM_KEY "):
        RunningServices.from_environment(partial)


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("DATABASE_URL", "postgresql://linkdesk:pw@db.example.org:5432/linkdesk"),
        ("LINKDESK_GATEWAY_URL", "http://10.0.0.8:8080"),
        ("NATS_URL", "nats://0.0.0.0:4222"),
        ("LINKDESK_TENANT_URL", "not a url"),
        # A client tries every host a URL lists, the later ones too.
        ("DATABASE_URL", "postgresql://app:pw@127.0.0.1:5432,10.0.0.5:5432/db"),
        ("DATABASE_URL", "postgresql://app:pw@127.0.0.1/db?host=10.0.0.5"),
        ("NATS_URL", "nats://127.0.0.1:4222,nats://10.0.0.5:4222"),
    ],
)
def test_running_services_only_on_loopback(variable: str, url: str) -> None:
    with pytest.raises(RunningServicesError) as raised:
        RunningServices.from_environment({**EXAMPLE, variable: url})
    message = str(raised.value)
    assert message.startswith(f"{variable} points at ")
    assert "pw" not in message


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_running_step_with_refused_posts_stops(tmp_path: Path) -> None:
    """A tenant limit above the first check's 25 forms still ends the run,
    once a POST step gets 429 responses, instead of reporting their rate."""
    env = {"GATEWAY_SUBMISSIONS_PER_TENANT": "30"}
    with own_stack(tmp_path / "own", env) as own:
        completed = run_on(own, ["--only", "post"], timeout=100)
        added = benchmark_tenants(own)
    assert completed.returncode != 0
    assert "GATEWAY_SUBMISSIONS_PER_TENANT=" in completed.stderr
    # The tenant it added takes no more forms, even after a failed run.
    assert [tenant["intake_enabled"] for tenant in added] == [False]


def run_on(
    own: OwnStack, options: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `bench.run --running --smoke` with `options` on `own`'s services."""
    return subprocess.run(
        [sys.executable, "-m", "bench.run", "--running", "--smoke", *options],
        cwd=ROOT,
        env={**os.environ, **running_environment(own.stack)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def benchmark_tenants(own: OwnStack) -> list[dict[str, object]]:
    listed = own.admin.tenants.get("/admin/tenants")
    listed.raise_for_status()
    tenants: list[dict[str, object]] = listed.json()
    return [tenant for tenant in tenants if tenant["name"] == RUNNING_TENANT]


@pytest.fixture
def limited_stack(tmp_path: Path) -> Iterator[OwnStack]:
    # The gateway's default limit of forms per person.
    with own_stack(tmp_path, {"GATEWAY_SUBMISSIONS_PER_PERSON": "20"}) as own:
        yield own


@pytest.mark.slow
def test_running_gateway_with_limits_is_refused(
    limited_stack: OwnStack, tmp_path: Path
) -> None:
    """Its POST steps would measure 429 responses, so the run stops first."""
    environment = running_environment(limited_stack.stack)
    system = System(
        tmp_path / "bench", running=RunningServices.from_environment(environment)
    )
    system.start()
    try:
        tenant = limited_stack.admin.tenants.get(
            f"/admin/tenants/{system.demo_data.tenant_id}"
        )
        assert tenant.json()["name"] == RUNNING_TENANT
        with pytest.raises(RuntimeError) as raised:
            bench_run.check_limits(system)
        assert "(429)" in str(raised.value)
        assert "GATEWAY_SUBMISSIONS_PER_PERSON=" in str(raised.value)
        assert system.pids() == {}
    finally:
        system.stop()
    # Nothing of the running services was stopped.
    assert all(service.running for service in limited_stack.stack.services.values())


async def _chain_left(nats_url: str, database_url: str) -> tuple[bool, bool]:
    nc = await nats.connect(nats_url)
    try:
        streams = [info.config.name for info in await nc.jetstream().streams_info()]
    finally:
        await nc.close()
    connection = await asyncpg.connect(database_url)
    try:
        table = await connection.fetchval("SELECT to_regclass('bench_chain')")
    finally:
        await connection.close()
    return CHAIN_STREAM in streams, table is not None


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_running_smoke_writes_page(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    output = tmp_path / "page" / "benchmarks.md"
    with own_stack(tmp_path / "own") as own:
        completed = run_on(own, ["--output", str(output)], timeout=220)
        assert completed.returncode == 0, (
            completed.stdout[-2000:] + completed.stderr[-2000:]
        )
        assert all(service.running for service in own.stack.services.values())
        left = asyncio.run(_chain_left(own.stack.nats_url, own.stack.database_url))
        assert left == (False, False)
        added = benchmark_tenants(own)
        assert [tenant["intake_enabled"] for tenant in added] == [False]

    work = Path(re.findall(r"bench: working folder (\S+)", completed.stdout)[0])
    results = json.loads((work / "results.json").read_text())
    kinds = {row["kind"]: row for row in results["product"]}
    assert kinds["linkdesk GET link"]["errors"] == 0
    assert kinds["linkdesk POST form"]["errors"] == 0
    assert kinds["linkdesk POST form"]["stored"]["rows"] > 0
    assert "backlog" not in results
    assert "profile" not in results
    # No servers of its own: their stores would be in the working folder.
    assert not (work / "data" / "nats").exists()
    assert not (work / "data" / "postgres").exists()

    page = output.read_text()
    assert "`.venv/bin/python -m bench.run --running`" in page
    assert "## Ours and the chain in turns" in page
    for absent in ("## Backlog drain", "## Resident memory", "## Where the time"):
        assert absent not in page
    shutil.rmtree(work)
