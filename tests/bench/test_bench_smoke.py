"""The benchmark command runs end to end in smoke mode; no timing is checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed"),
]


@pytest.mark.timeout(180)
def test_bench_smoke_writes_page(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    output = tmp_path / "benchmarks.md"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert completed.returncode == 0, (
        completed.stdout[-2000:] + completed.stderr[-2000:]
    )
    assert output.exists()
    assert (tmp_path / "benchmarks" / "intake-latency.png").exists()
    page = output.read_text()
    assert "## Targets" in page
    assert "linkdesk POST form" in page
