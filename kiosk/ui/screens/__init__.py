"""One Kivy screen per :class:`kiosk.presenter.Layout`, each a ``.py`` beside its ``.kv``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.properties import ObjectProperty
from kivy.uix.screenmanager import Screen

from kiosk.presenter import Action, View
from kiosk.ui.look import Look
from kiosk.ui.widgets import BoothButton, text_block

OnAction = Callable[[Action], None]


def load_kv(module_file: str) -> None:
    """Load the ``.kv`` that sits beside a screen's module."""
    Builder.load_file(str(Path(module_file).with_suffix(".kv")))


class BoothScreen(Screen):  # type: ignore[misc]
    """Draws a :class:`View`: title, lines and buttons into the ids its ``.kv`` names."""

    look: Any = ObjectProperty(None)

    def show(self, view: View, look: Look, on_action: OnAction) -> None:
        if self.look != look:
            self.look = look
        ids = self.ids
        if "title" in ids:
            ids.title.clear_widgets()
            ids.title.add_widget(text_block(view.title, look, title=True))
        if "body" in ids:
            ids.body.clear_widgets()
            for line in view.body:
                ids.body.add_widget(text_block(line, look))
        if "actions" in ids:
            ids.actions.clear_widgets()
            if hasattr(ids.actions, "cols"):
                # Side by side where a portrait screen has room; one column beside the text.
                n = len(view.actions)
                paired = n == 4 or (n == 2 and look.display.portrait)
                ids.actions.cols = 2 if paired else 1
            for action in view.actions:
                ids.actions.add_widget(BoothButton(action, look, on_action))
        self.show_more(view, look, on_action)

    def show_more(self, view: View, look: Look, on_action: OnAction) -> None:
        """Screen-specific parts; the plain message screen has none."""

    @staticmethod
    def spacing(look: Look) -> int:
        return look.gap

    def buttons(self) -> list[Any]:
        return [w for w in self.walk() if isinstance(w, BoothButton)]
