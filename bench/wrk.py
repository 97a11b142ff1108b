"""Run wrk with one of the Lua scripts in bench/lua and read its report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).parent / "lua"
REPORT_PREFIX = "BENCH_JSON "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no report."""


@dataclass(frozen=True)
class WrkResult:
    connections: int
    requests: int
    seconds: float
    errors: int
    """Socket errors, timeouts and responses with a status of 400 or more."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        msg = "wrk not found on PATH; install it with `apt-get install -y wrk`"
        raise WrkError(msg)
    return found


def run(
    url: str,
    script: str,
    connections: int,
    seconds: float,
    env: dict[str, str] | None = None,
) -> WrkResult:
    """Run wrk on `url` with `connections` open connections for `seconds`.

    wrk gets at most two threads, because the benchmark machine may have only
    two cores and the services under test need them too.
    """
    threads = max(1, min(2, connections))
    run_env = {
        **os.environ,
        **(env or {}),
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_THREADS": str(threads),
    }
    argv = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    completed = subprocess.run(
        argv,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith(REPORT_PREFIX):
            report = json.loads(line[len(REPORT_PREFIX) :])
            break
    else:
        msg = (
            f"wrk exited with {completed.returncode} and no report: "
            f"{completed.stdout[-500:]} {completed.stderr[-500:]}"
        )
        raise WrkError(msg)
    errors = sum(value for name, value in report.items() if name.startswith("errors_"))
    return WrkResult(
        connections=connections,
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        errors=errors,
        p50_ms=report["p50_us"] / 1000,
        p90_ms=report["p90_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        max_ms=report["max_us"] / 1000,
    )
