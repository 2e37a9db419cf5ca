"""Millimetres and palette roles turned into the pixels and RGBA Kivy draws with."""

from __future__ import annotations

from dataclasses import dataclass

from kiosk import theme
from kiosk.config import Display


@dataclass(frozen=True)
class Look:
    """Sizes and colours for one screen size and one set of accessibility choices."""

    display: Display
    large_text: bool = False
    high_contrast: bool = False

    @property
    def palette(self) -> theme.Palette:
        return theme.palette(self.high_contrast)

    def rgba(self, role: str) -> tuple[float, float, float, float]:
        colour: theme.Colour = getattr(self.palette, role)
        return colour.rgba

    @property
    def target(self) -> int:
        """The smallest touch target, in pixels."""
        return self.display.px(theme.TOUCH_TARGET_MM)

    def _font(self, mm: float) -> int:
        return self.display.px(mm)

    @property
    def body_px(self) -> int:
        return self._font(theme.font_sizes(self.large_text).body)

    @property
    def title_px(self) -> int:
        return self._font(theme.font_sizes(self.large_text).title)

    @property
    def button_px(self) -> int:
        return self._font(theme.font_sizes(self.large_text).button)

    @property
    def toolbar_px(self) -> int:
        """Toolbar labels keep one size so the toolbar always fits."""
        return self._font(theme.NORMAL_TEXT.body * 0.8)

    @property
    def gap(self) -> int:
        return self.display.px(3)
