"""The media benchmark's machinery, for a few seconds: it runs and prints its table.

The booth on the pass-through path (its simulated hardware encoder's thread
noted) and the Chromium page, at 640x480, a 2 s window each. Only that
numbers come out is checked: timings are the benchmark's to print
(``python -m tests.perf.bench_media``), never a test's to assert.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.browser import require_chromium
from tests.needs import need
from tests.perf import bench_media


@pytest.fixture(autouse=True)
def _parts() -> None:
    """Skip (outside CI) or fail (in CI, which installs them) without chromium and Xvfb."""
    require_chromium()
    need(shutil.which("Xvfb") is not None, "Xvfb is missing: `make apt` installs it")


NUMBER = r"\d+(?:\.\d+)?"


def test_a_short_run_prints_the_table_with_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    plan = bench_media.MediaPlan(
        sizes=((640, 480),), modes=("passthrough",), settle_s=1.0, measure_s=2.0
    )
    bench_media.main(plan)
    out = capsys.readouterr().out
    for side in ("booth, pass-through H.264", "Chromium page"):
        row = re.search(
            rf"^\| 640x480 +\| {re.escape(side)} +\| +({NUMBER}) \| +({NUMBER}) \|(.*)$", out, re.M
        )
        assert row, out
        cpu, pss = float(row.group(1)), float(row.group(2))
        assert cpu > 0 and pss > 0
        assert re.search(rf"\| 640x480@\d+ +{NUMBER} kbit/s", row.group(3)), row.group(0)
    assert re.search(r"^\| 640x480 .*video/H264", out, re.M), out  # pass-through sends H.264
    encoder = re.search(
        rf"^\| 640x480 +\|   without the simulated HW encoder \| +({NUMBER}) \|"
        rf".*\(encoder thread: ({NUMBER}) s/min\)",
        out,
        re.M,
    )
    assert encoder, out
    assert float(encoder.group(2)) > 0  # libx264 on its thread did encode
    assert re.search(
        r"^\| 640x480 +\| pass-through CPU <= 0.4x the page's +\| .*x \(.*\| (PASS|MISS) \|$",
        out,
        re.M,
    ), out
