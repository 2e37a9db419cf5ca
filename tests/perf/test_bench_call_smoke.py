"""The call benchmark's machinery, for a few seconds: it runs and prints its tables.

One call to the booth with its screen and one to the Chromium page, a 2 s
window each. Only that numbers come out is checked: timings are the
benchmark's to print (``make bench``), never a test's to assert.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.browser import require_chromium
from tests.needs import need
from tests.perf import bench_call


@pytest.fixture(autouse=True)
def _parts() -> None:
    """Skip (outside CI) or fail (in CI, which installs them) without chromium and Xvfb."""
    require_chromium()
    need(shutil.which("Xvfb") is not None, "Xvfb is missing: `make apt` installs it")


NUMBER = r"\d+(?:\.\d+)?"


def test_a_short_run_prints_tables_with_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    plan = bench_call.Plan(
        trials=1, settle_s=1.0, measure_s=2.0, headless=False, fps30=False, dead_stun=False
    )
    bench_call.main(plan)
    out = capsys.readouterr().out
    for side in ("booth, with its screen", "Chromium page"):
        setup = re.search(
            rf"^\| {re.escape(side)}.*\| no STUN +\| 1 \|(.*)$", out, flags=re.MULTILINE
        )
        assert setup, out
        assert len(re.findall(rf"{NUMBER} / +{NUMBER}", setup.group(1))) == 4, setup.group(0)
        cost = re.search(
            rf"^\| {re.escape(side)}[^|]*\| +({NUMBER}) \| +({NUMBER}) \|", out, flags=re.MULTILINE
        )
        assert cost, out
        cpu, pss = (float(v) for v in cost.groups())
        assert cpu > 0 and pss > 0
    assert re.search(r"^\| CPU <= the Chromium page's .*x \(.*\| (PASS|MISS) \|$", out, re.M), out
    assert re.search(r"^\| setup < 1 s, no STUN .*ms of 1 .*\| (PASS|MISS) \|$", out, re.M), out
    # Where the screen's booth spends: its threads, its mappings, the pictures it drew.
    assert re.search(rf"^  CPU s/min: .*main \(Kivy \+ booth loop\) {NUMBER}", out, re.M), out
    assert re.search(rf"^  PSS MiB: .*GL \(Mesa, LLVM\) {NUMBER}", out, re.M), out
    assert re.search(rf"^  screen: +{NUMBER} clinician pictures/s shown", out, re.M), out
    # The floors under the booth: the same measurement of its parts without a booth or a call.
    for floor in bench_call.FLOORS.values():
        row = re.search(
            rf"^\| {re.escape(floor)} +\| +({NUMBER}) \| +({NUMBER}) \| +({NUMBER})x \|", out, re.M
        )
        assert row, out
        assert float(row.group(2)) > 0 and float(row.group(3)) > 0, row.group(0)
