"""What each way of sending the booth's video costs: software VP8 or H.264, pass-through H.264.

Targets from the issue (booth media on Pi hardware):

* the whole booth on the pass-through path at most 0.4x the CPU of a Chromium
  page doing the same call;
* software H.264 no slower than software VP8, or not offered where VP8 is
  cheaper.

One run, side by side, at 640x480@30 and 1280x720@30: for each, the booth
process three times (one per way of sending video), then the Chromium page.
The benchmark prints the numbers, the ratios and PASS/MISS; it never fails on
a miss.

**The parties** are ``tests/perf/bench_call.py``'s, imported from it: the
hub (``clinic-hub serve --dev``), the clinician's console page in a headless
Chromium with its fake 640x480@30 camera (the far side; its CPU is printed
for reference), on a loopback-only network namespace when run as root.

* The booth: the real ``telehealth-kiosk --simulate --headless`` process,
  as ``bench_call.BoothProcess`` starts it, with this module's ``booth``
  command adding, before ``bench_call.booth_main``'s own hooks:

  - the camera: the test card at the size (software rows), or
    :class:`hardware.h264.EncodingTestCard` at the size (pass-through: the
    simulated hardware encoder, libx264 on a thread of its own, makes the
    H.264 that the booth sends unchanged);
  - ``kiosk/call/tracks.py``'s ``MAX_SIZE`` raised to the size, and the top
    video level at 30 fps, so the software rows send what the camera gives;
  - ``kiosk/call/engine.py``'s ``SOFTWARE_VIDEO_CODECS`` forced to VP8 only
    or H.264 only (aiortc's ``Vp8Encoder`` / ``H264Encoder`` with their own
    settings). A last row per size runs the booth as shipped (its codec
    preferences untouched) to show what it negotiates;
  - in the compared rows (not "as shipped") the video policy ignores the
    booth's CPU (``follow_cpu=False``): a booth that cannot keep up steps its
    video down (``kiosk/call/adapt.py``), which would compare a smaller
    picture with a bigger one. The "as shipped" row follows its CPU as a
    booth does, so its video may come out smaller on a busy machine.

  The pass-through row is given twice: the whole process, and without the
  simulated encoder's thread (its CPU time over the same measured window, from
  ``/proc/PID/task/TID/stat``). On a Pi 4 that work is the hardware
  encoder's, so the second number is the booth's share there; the 0.4x
  target is judged on it.
* The Chromium page: ``tests/perf/browser_kiosk.html`` (as in
  ``bench_call.py``) in a Chromium window on an ``Xvfb``, its fake camera
  playing the booth's own test card at the size and 30 fps, asking for that
  size (a copy of the page with its ``getUserMedia`` size changed).

**Cost**, as ``bench_call.py`` measures it: over ``measure_s`` seconds of a
connected call, after ``settle_s``: CPU seconds per call-minute (utime +
stime of every thread, ``/proc/PID/stat``; 60 = one core busy), and peak PSS.
The video each way is shown as the console and the page saw it
(``getStats()``), so a booth that stepped its video down (``kiosk/call/adapt.py``
follows the CPU) shows it.

The machine may be shared (other test runs): the numbers are one run's.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.perf import bench_call
from tests.perf.bench_call import (
    CHROMIUM,
    PAGE,
    BoothProcess,
    Clinic,
    Console,
    Cost,
    KioskPage,
    Lab,
    Plan,
)

FPS = 30
SIZES = ((640, 480), (1280, 720))
MODES = ("vp8", "h264", "passthrough", "shipped")
MODE_NAMES = {
    "vp8": "software VP8",
    "h264": "software H.264",
    "passthrough": "pass-through H.264",
    "shipped": "software, as shipped",
}
TARGET_PASSTHROUGH = 0.4  # pass-through booth CPU <= 0.4 x the Chromium page's
ENV = "BENCH_MEDIA"  # "MODE:WIDTHxHEIGHT" for the booth process


@dataclass(frozen=True)
class MediaPlan:
    """What to run: the full benchmark, or a few seconds of it (the smoke test)."""

    sizes: tuple[tuple[int, int], ...] = SIZES
    modes: tuple[str, ...] = MODES
    page: bool = True
    settle_s: float = 4.0
    measure_s: float = 20.0


# ---------------------------------------------------------------- inside the booth process


def booth_main(argv: list[str]) -> int:
    """``bench_call.booth_main`` with the camera, size and codec of ``$BENCH_MEDIA``."""
    mode, _, size = os.environ[ENV].partition(":")
    width, height = (int(v) for v in size.split("x"))
    fd = int(os.environ["BENCH_FD"])

    import hardware.camera
    from hardware import h264
    from kiosk.call import adapt, engine, tracks

    if mode != "shipped":  # every compared row sends the size asked for, whatever its load
        engine.VideoPolicy = functools.partial(adapt.VideoPolicy, follow_cpu=False)  # type: ignore[attr-defined,assignment]

    bench_call.WIDTH, bench_call.HEIGHT = width, height  # booth_main's test card size
    tracks.MAX_SIZE = (width, height)  # type: ignore[misc]
    if mode == "vp8":
        engine.SOFTWARE_VIDEO_CODECS = ("video/VP8",)
    elif mode == "h264":
        engine.SOFTWARE_VIDEO_CODECS = ("video/H264",)
    elif mode == "passthrough":
        hardware.camera.TestCard = h264.EncodingTestCard  # type: ignore[misc,assignment]
        run = h264.SimulatedH264Encoder._run

        def noted_run(self: h264.SimulatedH264Encoder) -> None:
            start = time.monotonic()
            try:
                run(self)
            finally:
                line = {
                    "event": "encoder",
                    "t": time.time(),
                    "cpu": time.thread_time(),
                    "wall": time.monotonic() - start,
                    "size": list(self.size),
                }
                os.write(fd, (json.dumps(line) + "\n").encode())

        h264.SimulatedH264Encoder._run = noted_run  # type: ignore[method-assign]
    return bench_call.booth_main(argv)


class MediaLab(Lab):
    """bench_call's lab, starting the booth through this module's ``booth`` command."""

    def popen(self, argv: list[str], **kwargs: Any) -> Any:
        if "tests.perf.bench_call" in argv and "booth" in argv:
            argv = [a if a != "tests.perf.bench_call" else "tests.perf.bench_media" for a in argv]
        return super().popen(argv, **kwargs)


# ---------------------------------------------------------------- measuring


@dataclass
class Result:
    name: str
    size: tuple[int, int]
    mode: str  # a MODES entry, or "page"
    cost: Cost | None = None
    encoder_min: float | None = None  # the simulated hardware encoder's CPU s/min
    error: str = ""
    notes: list[str] = field(default_factory=list)


def _page_dir(tmp: Path, size: tuple[int, int]) -> Path:
    """The kiosk page, asking its camera for ``size`` instead of 640x480."""
    out = tmp / f"www-{size[0]}x{size[1]}"
    out.mkdir(exist_ok=True)
    text = PAGE.read_text(encoding="utf-8")
    wanted = "width: { exact: 640 }, height: { exact: 480 }"
    if wanted not in text:
        raise RuntimeError(f"{PAGE.name} no longer asks for {wanted!r}: update bench_media")
    text = text.replace(wanted, f"width: {{ exact: {size[0]} }}, height: {{ exact: {size[1]} }}")
    (out / PAGE.name).write_text(text, encoding="utf-8")
    return out


async def _booth(
    clinic: Clinic,
    *,
    lab: Lab,
    tmp: Path,
    config: Path,
    display: str,
    mode: str,
    size: tuple[int, int],
) -> Result:
    result = Result(f"booth, {MODE_NAMES[mode]}", size, mode)
    env = {ENV: f"{mode}:{size[0]}x{size[1]}"}
    booth = BoothProcess(lab, tmp, config, window=False, display=display, fps=FPS, extra_env=env)
    try:
        _, result.cost = await bench_call._booth_calls(clinic, booth, 1, True)
        if mode == "passthrough" and result.cost is not None:
            # The encoder thread's CPU over the very window the process was measured in.
            part = result.cost.cpu_parts.get(bench_call.SIMULATED_ENCODER)
            if part is not None:
                result.encoder_min = part
            else:  # no thread names noted: its average over its life, a rougher figure
                note = await booth.wait_for(lambda: booth.last("encoder"), 5.0)
                if note and note["wall"] > 0:
                    result.encoder_min = 60 * note["cpu"] / note["wall"]
    except Exception as exc:  # one configuration failing must not lose the others
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        booth.stop()
    return result


async def _page(
    clinic: Clinic,
    *,
    playwright: Any,
    lab: Lab,
    tmp: Path,
    hub: Any,
    display: str,
    size: tuple[int, int],
) -> Result:
    result = Result("Chromium page", size, "page")
    bench_call.WIDTH, bench_call.HEIGHT = size  # the Y4M test card the page's camera plays
    base = lab.serve(_page_dir(tmp, size))
    kiosk = await KioskPage.open(playwright, lab, tmp, display)
    try:
        await kiosk.load(base, hub, [])
        _, result.cost = await bench_call._page_calls(clinic, kiosk, 1, True)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await kiosk.close()
        shutil.rmtree(kiosk.profile, ignore_errors=True)  # the next size starts afresh
    return result


async def run(plan: MediaPlan) -> tuple[list[Result], str]:
    from playwright.async_api import async_playwright

    results: list[Result] = []
    call_plan = Plan(trials=1, settle_s=plan.settle_s, measure_s=plan.measure_s)
    with bench_call._workdir() as tmp, bench_call._xvfb() as (display, xvfb):
        lab = MediaLab(tmp)
        try:
            hub = bench_call._start_hub(lab, tmp)
            config = bench_call._booth_config(tmp, hub, "media", [])
            async with async_playwright() as playwright:
                console = await Console.open(playwright, lab, tmp, hub)
                clinic = Clinic(call_plan, console, tmp / "console-profile", xvfb)
                for size in plan.sizes:
                    for mode in plan.modes:
                        results.append(
                            await _booth(
                                clinic,
                                lab=lab,
                                tmp=tmp,
                                config=config,
                                display=display,
                                mode=mode,
                                size=size,
                            )
                        )
                    if plan.page:
                        results.append(
                            await _page(
                                clinic,
                                playwright=playwright,
                                lab=lab,
                                tmp=tmp,
                                hub=hub,
                                display=display,
                                size=size,
                            )
                        )
        finally:
            lab.close()
    return results, lab.where


# ---------------------------------------------------------------- the table


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _find(results: list[Result], size: tuple[int, int], mode: str) -> Result | None:
    return next((r for r in results if r.size == size and r.mode == mode and r.cost), None)


def print_table(results: list[Result], plan: MediaPlan, where: str) -> None:
    print(
        f"Booth media, on {where}: a connected call, {plan.measure_s:.0f} s measured after "
        f"{plan.settle_s:.0f} s; CPU s per call-minute (60 = one core busy), peak PSS MiB"
    )
    print(
        "| size     | booth side                         | CPU s/min | PSS peak | VmHWM "
        "| booth -> console          | console -> booth | codec      | console s/min |"
    )
    print(
        "|----------|------------------------------------|-----------|----------|-------"
        "|---------------------------|------------------|------------|---------------|"
    )
    for r in results:
        label = f"{r.size[0]}x{r.size[1]}"
        if r.cost is None:
            print(f"| {label:<8} | {r.name:<34} | not measured: {r.error}")
            continue
        c = r.cost
        hwm = f"{c.hwm_mib:5.0f}" if c.hwm_mib is not None else f"{'-':>5}"
        line = (
            f"| {label:<8} | {r.name:<34} | {c.cpu_min:9.1f} | {c.pss_mib:8.0f} | {hwm} "
            f"| {c.booth_sent!s:<25} | {c.booth_got:<16} | {c.codec:<10} | {c.console_min:13.1f} |"
        )
        print(line)
        if r.encoder_min is not None:
            name = "  without the simulated HW encoder"
            print(
                f"| {label:<8} | {name:<34} | {c.cpu_min - r.encoder_min:9.1f} | {'':8} | {'':5} "
                f"| {'(encoder thread: ' + format(r.encoder_min, '.1f') + ' s/min)':<25} "
                f"| {'':16} | {'':10} | {'':13} |"
            )
    print(
        "Booth: telehealth-kiosk --simulate --headless, top video level at 30 fps, video policy "
        "ignoring the CPU except 'as shipped'. Pass-through: "
        "EncodingTestCard (libx264 on its own thread stands in for a Pi 4's hardware encoder); "
        "its second line leaves that thread out. Console: the far side (reference only)."
    )
    print()
    print("Targets")
    print("| size     | target                                   | measured                       "
          "                | ok?  |")  # fmt: skip
    print("|----------|------------------------------------------|--------------------------------"
          "----------------|------|")  # fmt: skip
    for size in plan.sizes:
        label = f"{size[0]}x{size[1]}"
        page, through = _find(results, size, "page"), _find(results, size, "passthrough")
        vp8, h264 = _find(results, size, "vp8"), _find(results, size, "h264")
        shipped = _find(results, size, "shipped")
        if page and through and page.cost and through.cost:
            own = through.cost.cpu_min - (through.encoder_min or 0.0)
            ratio = own / page.cost.cpu_min
            whole = through.cost.cpu_min / page.cost.cpu_min
            measured = (
                f"{ratio:4.2f}x ({own:.1f} vs {page.cost.cpu_min:.1f}; whole process {whole:.2f}x)"
            )
            target = f"pass-through CPU <= {TARGET_PASSTHROUGH}x the page's"
            print(
                f"| {label:<8} | {target:<40} | {measured:<46} "
                f"| {_verdict(ratio <= TARGET_PASSTHROUGH)} |"
            )
        if vp8 and h264 and vp8.cost and h264.cost:
            measured = f"H.264 {h264.cost.cpu_min:.1f} vs VP8 {vp8.cost.cpu_min:.1f}"
            faster = h264.cost.cpu_min <= vp8.cost.cpu_min
            if not faster and shipped and shipped.cost:
                codec = shipped.cost.codec
                offered = "H264" not in codec.upper()
                measured += f"; shipped negotiates {codec}"
                faster = offered
            print(
                f"| {label:<8} | {'software H.264 <= VP8, or not chosen':<40} | {measured:<46} "
                f"| {_verdict(faster)} |"
            )


def main(plan: MediaPlan | None = None) -> None:
    plan = plan or MediaPlan()
    missing = [n for n, ok in (("chromium", CHROMIUM.exists()), ("Xvfb", shutil.which("Xvfb")))
               if not ok]  # fmt: skip
    if missing:
        print(f"Booth media benchmark: not measured, needs {' and '.join(missing)} (`make apt`)")
        return
    started = time.monotonic()
    results, where = asyncio.run(run(plan))
    print_table(results, plan, where)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["booth"]:
        sys.exit(booth_main(sys.argv[2:]))
    main()
