"""Every screen, in every language, at every supported size: nothing overflows or is clipped.

Screenshots of each screen are written to a temporary folder (its path is
printed with ``-s``) so a person can look at them.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hardware.events import DeviceKind
from kiosk.presenter import Local, UiState
from kiosk.session import Booth, BundleState, State
from tests.kiosk.test_session import REPRESENTATIVES
from tests.kiosk.ui.harness import Pilot, booth_config, run_booth

SIZES = ("800x480", "1024x600", "1280x720", "720x1280")
PANELS: dict[str, tuple[Booth, UiState]] = {
    "check_in+keypad": (
        Booth(state=State.CHECK_IN),
        UiState(panel=Local.SHOW_KEYPAD, entry="12345"),
    ),
    "device_check+problem": (Booth(state=State.DEVICE_CHECK), UiState(panel=Local.PROBLEM)),
    "in_call+ask_end": (Booth(state=State.IN_CALL), UiState(panel=Local.ASK_END)),
    "in_call+muted+audio_only": (
        Booth(state=State.IN_CALL, muted=True, audio_only=True),
        UiState(),
    ),
    "attract+technician_pin": (Booth(), UiState(panel=Local.TECHNICIAN, entry="12")),
    "notice+idle_warning": (
        Booth(state=State.NOTICE, idle_warning=True),
        UiState(idle_seconds_left=25),
    ),
    "waiting+network_down": (Booth(state=State.WAITING, network_up=False), UiState()),
    "attract+large+contrast": (Booth(), UiState(large_text=True, high_contrast=True)),
    "notice+large_text": (Booth(state=State.NOTICE), UiState(large_text=True)),
    "attract+bundle_found": (Booth(bundle=BundleState.READY), UiState()),
    "out_of_service+updating": (Booth(state=State.OUT_OF_SERVICE, updating=True), UiState()),
    "out_of_service+bundle_refused": (
        Booth(state=State.OUT_OF_SERVICE, network_up=False, bundle=BundleState.REFUSED),
        UiState(),
    ),
    "device_check+broken_camera_and_microphone": (
        Booth(
            state=State.DEVICE_CHECK,
            broken=frozenset({DeviceKind.CAMERA, DeviceKind.MICROPHONE}),
        ),
        UiState(),
    ),
}


def _cases() -> dict[str, tuple[Booth, UiState]]:
    cases = {name: (b, UiState()) for name, b in REPRESENTATIVES.items()}
    cases.update(PANELS)
    return cases


def _problems(p: Pilot, width: int, height: int, large_text: bool) -> list[str]:
    """Text that does not fit its box, and boxes off the screen. Text may scroll only
    inside a text column whose scroll bar stays visible; buttons never scroll."""
    from kivy.uix.label import Label
    from kivy.uix.scrollview import ScrollView

    from kiosk.ui.widgets import BoothButton

    out = []
    scrolled: set[int] = set()
    for sv in p.app.root_widget.walk(restrict=False):
        if isinstance(sv, ScrollView) and sv.children and sv.get_root_window() is not None:
            content = sv.children[0]
            needs = content.height > sv.height + 1 and _shown(sv)
            if needs and (sv.bar_width < 2 or sv.bar_inactive_color[3] < 0.5):
                out.append(
                    f"text scrolls ({content.height:.0f} > {sv.height:.0f} px) without a bar"
                )
            if needs and any(isinstance(w, BoothButton) for w in content.walk(restrict=True)):
                out.append("a button is inside scrolling text")
            scrolled.update(id(w) for w in content.walk(restrict=True))
    for w in p.app.root_widget.walk(restrict=False):
        if not isinstance(w, Label) or not w.text or w.width <= 1 or not _shown(w):
            continue
        x, y = w.to_window(w.x, w.y)
        tw, th = w.texture_size
        label = f"{w.text[:40]!r}"
        if tw > w.width + 2 or th > w.height + 2:
            out.append(
                f"{label}: text {tw:.0f}x{th:.0f} does not fit its {w.width:.0f}x{w.height:.0f} box"
            )
        off_x = x < -1 or x + w.width > width + 1
        off_y = y < -1 or y + w.height > height + 1
        if off_x or (off_y and id(w) not in scrolled):
            out.append(
                f"{label}: box at {x:.0f},{y:.0f} {w.width:.0f}x{w.height:.0f} is off the screen"
            )
    return out


class _QuietClinician:
    """The longest call screen: the clinician's microphone and camera off as well."""

    clinician_state = SimpleNamespace(muted=True, camera_off=True)

    def remote_frame(self) -> None:
        return None


def _shown(w: Any) -> bool:
    node = w
    while node is not None:
        if getattr(node, "opacity", 1) == 0:
            return False
        parent = node.parent
        node = parent if parent is not node else None
    return w.get_root_window() is not None


def test_every_screen_fits_every_size_in_every_language() -> None:
    shots = Path(os.environ.get("KIOSK_SCREENSHOTS") or tempfile.mkdtemp(prefix="booth-screens-"))
    problems: list[str] = []
    rendered = 0

    async def scenario(p: Pilot) -> None:
        nonlocal rendered
        from kivy.core.window import Window

        for size in SIZES:
            cfg = booth_config(size)
            w, h = cfg.display.width, cfg.display.height
            Window.size = (w, h)
            p.app.config_ = cfg
            await p.frames(2)
            for name, (booth, ui) in _cases().items():
                for lang in cfg.site.languages:
                    p.controller.booth = replace(booth, language=lang)
                    p.app.ui = ui
                    p.app.render()
                    await p.frames(2)
                    rendered += 1
                    found = _problems(p, w, h, p.app.view.large_text)
                    problems.extend(f"{size} {lang} {name}: {x}" for x in found)
                    if size in ("800x480", "720x1280"):
                        p.app.root_widget.export_to_png(str(shots / f"{size}-{lang}-{name}.png"))
        p.controller.booth = Booth()

    asyncio.run(run_booth(scenario, remote=_QuietClinician()))
    print(f"\n{rendered} screens rendered; screenshots in {shots}")
    assert rendered == len(SIZES) * 2 * len(_cases())
    assert not problems, "\n".join(problems)
