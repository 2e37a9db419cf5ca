"""Run the real booth (simulated hardware) with its Kivy window offscreen, and press things."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from kiosk import config
from kiosk.ui import boot

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "examples" / "demo-booth.toml"


def booth_config(size: str = "800x480", **display: Any) -> config.BoothConfig:
    cfg = config.load(DEMO)
    return replace(cfg, display=replace(cfg.display, size=size, **display))


class Pilot:
    """Presses the booth's buttons the way a finger would: a touch at their centre."""

    def __init__(self, app: Any, runtime: Any) -> None:
        self.app = app
        self.runtime = runtime
        self.controller = runtime.controller
        self.wiring = runtime.simulation.wiring

    async def frames(self, n: int = 3) -> None:
        for _ in range(n):
            await asyncio.sleep(1 / 30)

    async def settle(self) -> None:
        await self.controller.settle()
        await self.frames()

    def buttons(self) -> dict[str, Any]:
        return {b.action.name: b for b in self.app.root_widget.buttons()}

    async def touch_at(self, x: float, y: float) -> None:
        from kivy.tests.common import UnitTestTouch

        touch = UnitTestTouch(x, y)
        touch.touch_down()
        await self.frames(1)
        touch.touch_up()
        await self.settle()

    async def press(self, name: str) -> None:
        """Touch the centre of the button named ``name`` once the layout has settled."""
        from kivy.core.window import Window

        await self.settle()
        where = None
        for _ in range(50):
            buttons = self.buttons()
            if name in buttons:
                button = buttons[name]
                now = (button.to_window(*button.center), tuple(button.size))
                if now == where:
                    break
                where = now
            await self.frames(1)
        buttons = self.buttons()
        if name not in buttons:
            raise AssertionError(f"no button {name!r} on {self.state}; there are {sorted(buttons)}")
        button = buttons[name]
        x, y = button.to_window(*button.center)
        assert 0 <= x <= Window.width and 0 <= y <= Window.height, (name, x, y, Window.size)
        await self.touch_at(x, y)

    async def wait_for(self, state: str, timeout: float = 2.0) -> None:
        """Let real time pass (hold timers, debounce) until the booth reaches ``state``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.state != state:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"still {self.state}, waited {timeout} s for {state}")
            await self.frames(1)
            await self.controller.settle()
        await self.frames(2)

    async def settle_tasks(self) -> None:
        """Wait for the app's own background work (PIN checks run off the loop)."""
        while self.app._tasks:
            await asyncio.wait(set(self.app._tasks))
        await self.settle()

    @property
    def state(self) -> str:
        return str(self.controller.booth.state.value)

    def texts(self) -> list[str]:
        from kivy.uix.label import Label

        return [
            w.text
            for w in self.app.root_widget.walk(restrict=False)
            if isinstance(w, Label) and w.text
        ]


async def run_booth(
    scenario: Callable[[Pilot], Awaitable[None]],
    cfg: config.BoothConfig | None = None,
    speaker: Any = None,
    remote: Any = None,
) -> None:
    """Start the booth and its window, run ``scenario``, stop both.

    ``remote`` stands in for the call engine's clinician video when given;
    otherwise the runtime's own call engine (if any) is drawn.
    """
    cfg = cfg or booth_config()
    boot.configure(cfg.display, window=False, simulate=True)
    from kivy.config import Config

    Config.set("graphics", "width", str(cfg.display.width))
    Config.set("graphics", "height", str(cfg.display.height))
    from kiosk.app import BoothRuntime
    from kiosk.ui.app import BoothApp, run_app

    runtime = BoothRuntime(cfg, simulate=True)
    controller = await runtime.start()
    app = BoothApp(controller, speaker=speaker, remote=remote or getattr(runtime, "call", None))
    stopped = asyncio.Event()
    ui = asyncio.ensure_future(run_app(app, stopped))
    try:
        from kivy.core.window import Window

        Window.size = (cfg.display.width, cfg.display.height)
        pilot = Pilot(app, runtime)
        for _ in range(100):
            if app.root_widget is not None and app.renders:
                break
            await asyncio.sleep(0.02)
        await pilot.settle()
        await scenario(pilot)
    finally:
        stopped.set()
        await ui
        await runtime.close()
