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
    # Only logs and results may stay: the stores, link files and demo data
    # hold the benchmark tenants' secrets, and the prepared forms are large.
    work = _work_folder(completed.stdout)
    left = sorted(
        str(path.relative_to(work)) for path in work.rglob("*") if path.is_file()
    )
    assert all(
        name == "results.json" or name.startswith("data/logs/") for name in left
    ), left
    assert (tmp_path / "benchmarks" / "intake-latency.png").exists()
    page = output.read_text()
    assert "## Targets" in page
    assert "linkdesk POST form" in page
    assert "linkdesk POST form, many tenants" in page
    assert "## Accepted to committed" in page
    assert "During the POST load steps" in page
    turns = page.split("## Ours and the chain in turns", 1)[1].split("\n## ", 1)[0]
    assert (
        len(
            [
                line
                for line in turns.splitlines()
                if line[:4] in {"| 1 ", "| 2 ", "| 3 "}
            ]
        )
        == 3
    )


def _work_folder(stdout: str) -> Path:
    prefix = "bench: working folder "
    line = next(line for line in stdout.splitlines() if line.startswith(prefix))
    return Path(line.removeprefix(prefix))
