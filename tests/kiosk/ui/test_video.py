"""The call screen draws the clinician when a new picture came, at most CALL_FPS a second."""

from __future__ import annotations

import asyncio
from typing import Any

from hardware.camera import Frame, TestCard
from kiosk.session import ClinicianAnswered
from tests.kiosk.ui.harness import Pilot, run_booth


class _Clinician:
    """A clinician whose picture moves (a new frame each time) or stands still (the same one)."""

    def __init__(self) -> None:
        self.card = TestCard(width=640, height=480)
        self.card.open()
        self.still: Frame | None = self.card.latest()
        self.moving = True

    def remote_frame(self) -> Frame | None:
        return self.card.latest() if self.moving else self.still


def test_the_call_screen_redraws_for_new_pictures_only_and_at_most_call_fps() -> None:
    clinician = _Clinician()

    async def scenario(p: Pilot) -> None:
        from kivy.core.window import Window  # Kivy only once the booth has configured it

        from kiosk.ui.app import CALL_FPS

        for name in ("start", "accept", "walk_in", "devices_ok"):
            await p.press(name)
        p.controller.post(ClinicianAnswered())
        await p.wait_for("in_call")
        flips = [0]

        def flipped(*_: Any) -> None:
            flips[0] += 1

        Window.bind(on_flip=flipped)

        async def second() -> tuple[int, int]:
            f, shown = flips[0], p.app.remote_pictures
            await asyncio.sleep(1.0)
            return flips[0] - f, p.app.remote_pictures - shown

        await asyncio.sleep(0.3)
        moving_flips, moving = await second()
        clinician.moving = False
        await asyncio.sleep(0.3)
        still_flips, still = await second()
        Window.unbind(on_flip=flipped)
        assert 5 <= moving <= CALL_FPS + 1, f"{moving} clinician pictures in a second"
        assert moving_flips <= CALL_FPS + 3, f"{moving_flips} redraws in a second"
        assert still == 0, "the same picture is not taken again"
        # Only the resident's self-view (a few a second in a call) still redraws.
        assert still_flips <= moving_flips // 2, (still_flips, moving_flips)

    asyncio.run(run_booth(scenario, remote=clinician))


class _BlueClinician:
    """A clinician whose picture is all blue, so any pixel of it can be told apart."""

    def __init__(self) -> None:
        self.frames = 0

    def remote_frame(self) -> Frame:
        self.frames += 1  # a new frame each time: the screen keeps taking pictures
        return Frame(64, 48, bytes((0, 0, 255)) * (64 * 48))


def _pixel_at(x: float, y: float) -> tuple[int, int, int]:
    from kivy.graphics import opengl as gl

    data = gl.glReadPixels(int(x), int(y), 1, 1, gl.GL_RGBA, gl.GL_UNSIGNED_BYTE)
    return data[0], data[1], data[2]


def test_call_pictures_are_drawn_without_blending_and_a_hidden_self_view_is_not_drawn() -> None:
    async def scenario(p: Pilot) -> None:
        from kivy.core.window import Window

        for name in ("start", "accept", "walk_in", "devices_ok"):
            await p.press(name)
        p.controller.post(ClinicianAnswered())
        await p.wait_for("in_call")
        await asyncio.sleep(0.5)
        screen = p.app.root_widget.manager.current_screen
        remote, self_view = screen.ids.remote_view, screen.ids.self_view
        seen: dict[str, tuple[int, int, int]] = {}

        def read(*_: Any) -> None:
            seen["remote"] = _pixel_at(*remote.center)
            seen["self_view"] = _pixel_at(*self_view.center)

        Window.bind(on_flip=read)
        await asyncio.sleep(0.5)
        shown = dict(seen)
        skipped = remote.blend_skipped
        self_view.opacity = 0  # as the call screen hides it when the resident turned it off
        await asyncio.sleep(0.5)
        hidden = dict(seen)
        Window.unbind(on_flip=read)

        assert skipped > 0, "the clinician's picture is drawn without blending"
        assert shown["remote"] == (0, 0, 255), f"the clinician's picture is on the screen: {shown}"
        assert shown["self_view"] != (0, 0, 255), f"the self-view covers the clinician: {shown}"
        background = tuple(round(c * 255) for c in p.app.look.rgba("background")[:3])
        # The clinician's picture is letterboxed: under the self-view is the background.
        assert hidden["self_view"] == background, f"a hidden self-view is not drawn: {hidden}"

    asyncio.run(run_booth(scenario, remote=_BlueClinician()))


def test_the_booth_window_loads_images_through_sdl2_alone() -> None:
    """Kivy's own PNGs are all the booth shows: Pillow would be memory for nothing."""

    async def scenario(p: Pilot) -> None:
        from kivy.core.image import ImageLoader

        # Kivy imports a loader's library only for the loaders it keeps (other tests may use PIL).
        assert [loader.__name__ for loader in ImageLoader.loaders] == ["ImageLoaderSDL2"]
        await p.press("start")  # screens still draw (Kivy's theme images come through SDL2)

    asyncio.run(run_booth(scenario))
