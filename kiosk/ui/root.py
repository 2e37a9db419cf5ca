"""The booth's whole screen: toolbar, banner, the current screen and any overlay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.properties import ObjectProperty
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager

from kiosk.presenter import Action, Layout, Local, View
from kiosk.ui.look import Look
from kiosk.ui.screens.attract import AttractScreen
from kiosk.ui.screens.call import CallScreen
from kiosk.ui.screens.device_check import DeviceCheckScreen
from kiosk.ui.screens.emergency import EmergencyScreen
from kiosk.ui.screens.keypad import KeypadScreen
from kiosk.ui.screens.message import MessageScreen
from kiosk.ui.widgets import BoothButton, text_block

Builder.load_file(str(Path(__file__).with_suffix(".kv")))

SCREENS = {
    Layout.ATTRACT: AttractScreen,
    Layout.MESSAGE: MessageScreen,
    Layout.KEYPAD: KeypadScreen,
    Layout.DEVICE_CHECK: DeviceCheckScreen,
    Layout.CALL: CallScreen,
    Layout.EMERGENCY: EmergencyScreen,
}
SECRET_TAPS = 5
SECRET_WINDOW_S = 4.0


class BoothRoot(FloatLayout):  # type: ignore[misc]
    """Draws views; reports touched actions through ``on_action``."""

    look: Any = ObjectProperty(None)

    def __init__(
        self, on_action: Callable[[Action], None], clock: Callable[[], float], look: Look, **kw: Any
    ):
        super().__init__(look=look, **kw)
        self.on_look(self, look)
        self._on_action = on_action
        self._clock = clock
        self._taps: list[float] = []
        self.view: View | None = None
        manager = ScreenManager(transition=NoTransition())
        for layout, cls in SCREENS.items():
            manager.add_widget(cls(name=layout.value, look=look))
        self.ids.screens.add_widget(manager)
        self.manager = manager

    def on_look(self, _root: Any, look: Look | None) -> None:
        """The theme's background is the window's clear colour (high contrast changes it)."""
        if look is not None:
            from kivy.core.window import Window

            Window.clearcolor = look.rgba("background")

    def show(self, view: View, look: Look) -> None:
        if self.look != look:
            self.look = look
        self.view = view
        ids = self.ids
        ids.toolbar.clear_widgets()
        languages = () if view.layout is Layout.ATTRACT else view.languages  # attract has its own
        for action in (*languages, *view.toggles):
            button = BoothButton(action, look, self._on_action)
            button.font_size = look.toolbar_px  # short words side by side, at any text size
            ids.toolbar.add_widget(button)
        ids.banner.clear_widgets()
        if view.banner:
            ids.banner.add_widget(text_block(view.banner, look, role="on_warning"))
        self.manager.current = view.layout.value
        self.manager.current_screen.show(view, look, self._on_action)
        ids.overlay.clear_widgets()
        ids.overlay.opacity = 0
        if view.overlay is not None:
            o = view.overlay
            ids.overlay.opacity = 1
            ids.overlay.add_widget(text_block(o.title, look, title=True))
            for line in o.lines:
                ids.overlay.add_widget(text_block(line, look))
            ids.overlay.add_widget(BoothButton(o.action, look, self._on_action))

    def on_touch_down(self, touch: Any) -> bool:
        corner = self.ids.screens
        size = max(corner.height, corner.width) * 0.12
        if touch.x < self.x + size and touch.y > self.top - size:
            now = self._clock()
            self._taps = [t for t in self._taps if now - t < SECRET_WINDOW_S] + [now]
            if len(self._taps) >= SECRET_TAPS:
                self._taps.clear()
                self._on_action(Action("", local=Local.TECHNICIAN, key="technician"))
                return True
        overlay = self.ids.overlay
        if overlay.children and not overlay.collide_point(*touch.pos):
            return True  # a question on screen must be answered first
        handled: bool = super().on_touch_down(touch)
        return handled

    def buttons(self) -> list[BoothButton]:
        """Every button now on screen, for tests and speech."""
        return [
            w for w in self.walk(restrict=False) if isinstance(w, BoothButton) and not w.disabled
        ]
