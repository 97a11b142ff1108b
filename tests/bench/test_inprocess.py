"""The in-process gateway measurement runs end to end. No timing is checked."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("method", "status"), [("get", 200), ("post", 303)])
@pytest.mark.timeout(120)
def test_inprocess_round_answers_every_request(method: str, status: int) -> None:
    before = set(Path(tempfile.gettempdir()).glob("linkdesk-bench-inprocess-*"))
    completed = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", method, "--requests", "64"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    rounds = re.findall(
        r"round \d: .* µs CPU each, statuses (\{.*\})", completed.stdout
    )
    assert rounds == [f"{{{status}: 64}}"] * 3, completed.stdout
    # The work folder contains the benchmark tenant's secret, so none stays.
    after = set(Path(tempfile.gettempdir()).glob("linkdesk-bench-inprocess-*"))
    assert after <= before
