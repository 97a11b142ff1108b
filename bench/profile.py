"""Sample the gateway with py-spy while wrk posts forms, and sum the samples."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import wrk

PROFILE_CLIENTS = 32
TOP = 25


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def profile_gateway(
    system: Any,
    args: argparse.Namespace,
    work: Path,
    form_bodies: Callable[[Any, int], list[str]],
) -> dict[str, object]:
    """Record 10 s of gateway stacks under a POST load of 32 connections.

    Returns the share of samples in which each function is on the stack
    (inclusive) and at the top (self), for the `TOP` largest.
    """
    binary = _py_spy()
    if binary is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    seconds = 10
    body_file = work / "forms-profile.txt"
    body_file.write_text("\n".join(form_bodies(system, 40_000)) + "\n")
    raw = work / "gateway-profile.txt"
    recorder = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(system.stack.services["gateway"].pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(raw),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    load = wrk.run(
        f"{system.url('gateway')}/public/tickets",
        "post_forms.lua",
        PROFILE_CLIENTS,
        seconds,
        {"BENCH_BODY_FILE": str(body_file)},
    )
    output, _ = recorder.communicate(timeout=60)
    if recorder.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {output.decode(errors='replace')[-400:]}"}
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_short(frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    return {
        "samples": total,
        "rate_during_profile": load.rate,
        "raw_file": str(raw),
        "inclusive": [
            (name, count / total) for name, count in inclusive.most_common(TOP * 3)
        ],
        "self": [(name, count / total) for name, count in own.most_common(TOP)],
    }


def _short(frame: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    name, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"
