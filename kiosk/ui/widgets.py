"""The few widgets every screen is made of: big buttons and wrapping text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.factory import Factory
from kivy.graphics import Callback
from kivy.graphics import opengl as gl
from kivy.lang import Builder
from kivy.properties import ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.image import Image
from kivy.uix.label import Label

from kiosk.presenter import Action, Style
from kiosk.ui.look import Look

Builder.load_file(str(Path(__file__).with_suffix(".kv")))

_FILL = {Style.PRIMARY: "primary", Style.SECONDARY: "secondary", Style.DANGER: "danger"}
_INK = {Style.PRIMARY: "on_primary", Style.SECONDARY: "on_secondary", Style.DANGER: "on_danger"}


class TextBlock(Label):  # type: ignore[misc]
    """Text that wraps to its width and grows to its height, never clipped."""

    role = StringProperty("text")


class BoothButton(ButtonBehavior, Label):  # type: ignore[misc]
    """A touch target of at least 20 mm carrying one :class:`Action`."""

    action: Any = ObjectProperty(None, allownone=True)
    fill = ListProperty([0.0, 0.0, 0.0, 1.0])
    edge = ListProperty([0.0, 0.0, 0.0, 1.0])
    min_px = NumericProperty(100)

    def __init__(self, action: Action, look: Look, on_action: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.action = action
        self.text = action.label
        self.fill = list(look.rgba(_FILL[action.style]))
        self.color = list(look.rgba(_INK[action.style]))
        self.edge = list(look.rgba("outline"))
        self.min_px = look.target
        self.font_size = look.body_px  # bold at body size: long labels still fit a target
        self._on_action = on_action
        self.min_state_time = 0

    def on_release(self) -> None:
        self._on_action(self.action)


class OpaquePicture(Image):  # type: ignore[misc]
    """A camera or clinician picture, drawn without blending while it is fully visible.

    A video picture has no transparent pixel, so blending it (reading every
    pixel under it back first) is work for nothing, at every frame of a call.
    Without a GPU that is about a tenth of drawing the clinician's picture
    (``tests/perf/bench_call.py``); with one, it is fill rate a Pi's GPU can
    spare. Blending is turned back on right after the picture, and left on
    while the picture is faded or hidden (``opacity`` below 1), which only
    blending can show.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blend_skipped = 0
        """Pictures drawn without blending so far (the tests' proof it happens)."""
        # Added after the kv rules have filled canvas.before, so what they draw there blends.
        self.canvas.before.add(Callback(self._blend_off))
        self.canvas.after.add(Callback(_blend_on))

    def _blend_off(self, _instruction: object) -> None:
        if self.opacity >= 1 and self.texture is not None:
            gl.glDisable(gl.GL_BLEND)
            self.blend_skipped += 1


def _blend_on(_instruction: object) -> None:
    gl.glEnable(gl.GL_BLEND)


Factory.register("OpaquePicture", cls=OpaquePicture)


def text_block(text: str, look: Look, *, title: bool = False, role: str = "text") -> TextBlock:
    return TextBlock(
        text=text,
        font_size=look.title_px if title else look.body_px,
        bold=title,
        color=list(look.rgba(role)),
        role=role,
    )
