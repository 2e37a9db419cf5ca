"""A USB camera's mode: read from ``v4l2-ctl --list-formats-ext``, chosen by a pure function."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import v4l2
from hardware.v4l2 import (
    MAX_PIXELS,
    MIN_FPS,
    PYAV_FORMATS,
    Mode,
    UsbCamera,
    choose_mode,
    input_options,
    list_modes,
    parse_formats,
    useful,
)

# A Logitech C920-class webcam (abridged): YUYV is fast only when small; MJPG goes to 1080p30.
C920 = """\
ioctl: VIDIOC_ENUM_FMT
\tType: Video Capture

\t[0]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\t\tInterval: Discrete 0.042s (24.000 fps)
\t\t\tInterval: Discrete 0.050s (20.000 fps)
\t\t\tInterval: Discrete 0.067s (15.000 fps)
\t\tSize: Discrete 320x240
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 800x600
\t\t\tInterval: Discrete 0.042s (24.000 fps)
\t\t\tInterval: Discrete 0.067s (15.000 fps)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.100s (10.000 fps)
\t\t\tInterval: Discrete 0.133s (7.500 fps)
\t\tSize: Discrete 1920x1080
\t\t\tInterval: Discrete 0.200s (5.000 fps)
\t[1]: 'H264' (H.264, compressed)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t[2]: 'MJPG' (Motion-JPEG, compressed)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 1920x1080
\t\t\tInterval: Discrete 0.033s (30.000 fps)
"""

# A cheap 720p camera: YUYV only as a slideshow, MJPG at speed.
CHEAP_720P = """\
ioctl: VIDIOC_ENUM_FMT
\tType: Video Capture

\t[0]: 'MJPG' (Motion-JPEG, compressed)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 320x240
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t[1]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.200s (5.000 fps)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.100s (10.000 fps)
"""

# A wide-only conference camera: no 4:3 size at all, 1080p over budget.
WIDE_ONLY = """\
\t[0]: 'MJPG' (Motion-JPEG, compressed)
\t\tSize: Discrete 1920x1080
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 960x540
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 640x360
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 424x240
\t\t\tInterval: Discrete 0.033s (30.000 fps)
"""

# No 640x480: the closest above it.
NO_VGA = """\
\t[0]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Discrete 352x288
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 800x600
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\tSize: Discrete 1024x768
\t\t\tInterval: Discrete 0.033s (30.000 fps)
"""

# Older v4l2-ctl (v4l-utils 1.0 era) prints each format as a block of fields.
OLD_STYLE = """\
ioctl: VIDIOC_ENUM_FMT
\tIndex       : 0
\tType        : Video Capture
\tPixel Format: 'MJPG' (compressed)
\tName        : Motion-JPEG
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)

\tIndex       : 1
\tType        : Video Capture
\tPixel Format: 'YUYV'
\tName        : YUYV 4:2:2
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.067s (15.000 fps)
"""

# A sensor-style driver with ranges instead of lists.
STEPWISE = """\
\t[0]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Stepwise 32x32 - 1280x960 with step 2/2
\t\t\tInterval: Stepwise 0.017s - 1.000s with step 0.000s (1.000-60.000 fps)
"""


def test_parse_reads_every_listed_mode_in_order() -> None:
    modes = parse_formats(C920)
    assert modes[:5] == [
        Mode("YUYV", 640, 480, 30.0),
        Mode("YUYV", 640, 480, 24.0),
        Mode("YUYV", 640, 480, 20.0),
        Mode("YUYV", 640, 480, 15.0),
        Mode("YUYV", 320, 240, 30.0),
    ]
    assert Mode("YUYV", 1280, 720, 7.5) in modes
    assert Mode("H264", 640, 480, 30.0) in modes
    assert Mode("MJPG", 1920, 1080, 30.0) in modes
    assert len(modes) == 14


def test_parse_reads_the_old_layout_and_ranges() -> None:
    assert parse_formats(OLD_STYLE) == [Mode("MJPG", 640, 480, 30.0), Mode("YUYV", 640, 480, 15.0)]
    ranged = parse_formats(STEPWISE)
    assert Mode("YUYV", 640, 480, 60.0) in ranged
    assert Mode("YUYV", 640, 480, 30.0) in ranged
    assert Mode("YUYV", 1280, 960, 60.0) in ranged
    assert all(m.width <= 1280 and m.height <= 960 for m in ranged)
    assert Mode("YUYV", 1280, 720, 30.0) in ranged  # within range, on the 2-pixel step


def test_parse_skips_what_it_cannot_read() -> None:
    assert parse_formats("") == []
    assert parse_formats("garbage\n\t\tSize: Discrete 640x480\n\t\t\tInterval: x") == []
    no_format = "\t\tSize: Discrete 640x480\n\t\t\tInterval: Discrete 0.033s (30.000 fps)\n"
    assert parse_formats(no_format) == []


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        # 640x480@30 offered raw: no JPEG decoding needed, nothing bigger to scale down.
        (C920, Mode("YUYV", 640, 480, 30.0)),
        # YUYV 640x480 only at 10 fps: MJPG at 30 fps serves the call better.
        (CHEAP_720P, Mode("MJPG", 640, 480, 30.0)),
        # 1280x720 and 960x540 would only be scaled down to 640x360; 1080p is over budget.
        (WIDE_ONLY, Mode("MJPG", 640, 360, 30.0)),
        # No 640x480: the closest above it (800x600 is sent as 640x480), not 352x288.
        (NO_VGA, Mode("YUYV", 800, 600, 30.0)),
        # Full at 30 fps only as MJPG, raw at 15: MJPG.
        (OLD_STYLE, Mode("MJPG", 640, 480, 30.0)),
        # A range: exactly the wish.
        (STEPWISE, Mode("YUYV", 640, 480, 30.0)),
    ],
)
def test_chooser_picks_sensibly_from_real_listings(listing: str, expected: Mode) -> None:
    assert choose_mode(parse_formats(listing)) == expected


def test_chooser_values_size_over_speed_down_to_the_budget() -> None:
    modes = [Mode("YUYV", 640, 480, 15.0), Mode("YUYV", 320, 240, 30.0)]
    assert choose_mode(modes) == Mode("YUYV", 640, 480, 15.0)
    # Below MIN_FPS a mode is a slideshow: the small fast one is better.
    slow = [Mode("YUYV", 640, 480, 5.0), Mode("YUYV", 320, 240, 30.0)]
    assert choose_mode(slow) == Mode("YUYV", 320, 240, 30.0)
    # At an equal mode, YUYV (no decoding) before MJPG; 60 fps gains nothing over 30.
    same = [Mode("MJPG", 640, 480, 30.0), Mode("YUYV", 640, 480, 30.0), Mode("MJPG", 640, 480, 60)]
    assert choose_mode(same) == Mode("YUYV", 640, 480, 30.0)


def test_chooser_falls_back_to_what_there_is() -> None:
    # Everything over budget: still one of the camera's modes, the least wasteful.
    big = [Mode("MJPG", 1920, 1080, 30.0), Mode("MJPG", 2592, 1944, 15.0)]
    assert choose_mode(big) == Mode("MJPG", 1920, 1080, 30.0)
    assert choose_mode([Mode("YUYV", 640, 480, 5.0)]) == Mode("YUYV", 640, 480, 5.0)
    # Only formats this module cannot read: none.
    assert choose_mode([Mode("H264", 640, 480, 30.0), Mode("NV12", 640, 480, 30.0)]) is None
    assert choose_mode([]) is None


FOURCCS = st.sampled_from(["YUYV", "MJPG", "H264", "NV12"])
SIZES = st.sampled_from(
    [
        *[(160, 120), (320, 240), (424, 240), (640, 360), (640, 480), (800, 600), (960, 540)],
        *[(1024, 768), (1280, 720), (1280, 960), (1920, 1080), (2592, 1944)],
    ]
)
RATES = st.sampled_from([5.0, 7.5, 10.0, 15.0, 20.0, 24.0, 25.0, 30.0, 60.0])
MODES = st.builds(lambda f, s, r: Mode(f, s[0], s[1], r), FOURCCS, SIZES, RATES)


@settings(max_examples=300, deadline=None)
@given(st.lists(MODES, max_size=25))
def test_chooser_never_picks_a_mode_the_device_does_not_offer(modes: list[Mode]) -> None:
    chosen = choose_mode(modes)
    readable = [m for m in modes if m.fourcc in PYAV_FORMATS]
    if not readable:
        assert chosen is None
        return
    assert chosen in modes and chosen.fourcc in PYAV_FORMATS
    in_budget = [m for m in readable if m.pixels <= MAX_PIXELS and m.fps >= MIN_FPS]
    if in_budget:
        assert chosen in in_budget
        assert all(useful(m) <= useful(chosen) for m in in_budget)


def render(modes: list[Mode]) -> str:
    """A listing in v4l2-ctl's current layout."""
    lines = ["ioctl: VIDIOC_ENUM_FMT", "\tType: Video Capture", ""]
    by_format: dict[str, dict[tuple[int, int], list[float]]] = {}
    for m in modes:
        by_format.setdefault(m.fourcc, {}).setdefault((m.width, m.height), []).append(m.fps)
    for i, (fourcc, sizes) in enumerate(by_format.items()):
        lines.append(f"\t[{i}]: '{fourcc}' (something)")
        for (w, h), rates in sizes.items():
            lines.append(f"\t\tSize: Discrete {w}x{h}")
            lines += [f"\t\t\tInterval: Discrete {1 / r:.3f}s ({r:.3f} fps)" for r in rates]
    return "\n".join(lines) + "\n"


@settings(max_examples=100, deadline=None)
@given(st.lists(MODES, max_size=20, unique=True))
def test_parse_reads_back_any_listing(modes: list[Mode]) -> None:
    assert set(parse_formats(render(modes))) == set(modes)


def test_input_options_name_ffmpegs_formats() -> None:
    assert input_options(Mode("YUYV", 640, 480, 30.0)) == {
        "input_format": "yuyv422",
        "video_size": "640x480",
        "framerate": "30",
    }
    assert input_options(Mode("MJPG", 1280, 720, 7.5))["framerate"] == "7.5"
    assert input_options(None) == {}


def test_list_modes_runs_v4l2_ctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "v4l2-ctl"
    tool.write_text("#!/bin/sh\ncat <<'EOF'\n" + CHEAP_720P + "EOF\n")
    tool.chmod(0o755)
    monkeypatch.setattr(v4l2.shutil, "which", lambda name: str(tool))
    assert list_modes("/dev/video0") == parse_formats(CHEAP_720P)
    tool.write_text("#!/bin/sh\nexit 1\n")
    assert list_modes("/dev/video0") is None
    monkeypatch.setattr(v4l2.shutil, "which", lambda name: None)
    assert list_modes("/dev/video0") is None


def test_list_modes_gives_up_on_a_hung_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(*args: object, **kwargs: object) -> None:
        raise subprocess.TimeoutExpired("v4l2-ctl", 5)

    monkeypatch.setattr(v4l2.shutil, "which", lambda name: "/usr/bin/v4l2-ctl")
    monkeypatch.setattr(v4l2.subprocess, "run", hang)
    assert list_modes("/dev/video0") is None


def test_a_missing_device_is_a_hardware_error() -> None:
    from kiosk.errors import HardwareError

    camera = UsbCamera("/dev/video-none", modes=[Mode("MJPG", 640, 480, 30.0)])
    assert camera.encoder is None
    with pytest.raises(HardwareError, match="could not be opened"):
        camera.open()
    assert camera.latest() is None
    camera.close()  # closing an unopened camera is fine
