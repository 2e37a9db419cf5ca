"""Colours and sizes for the booth's screen, checked against WCAG 2.2 contrast.

Residents include people with low vision, in a small room under whatever
light it has, so the colours here are chosen for contrast first: in the
normal palette every text pair reaches 4.5:1 (WCAG AA), in the high-contrast
palette 7:1 (AAA), and tests hold them to it. The UI never relies on colour
alone: every coloured state is paired with words and an icon (a red "End
call" button also says "End call" and shows a hang-up icon; a warning banner
starts with its symbol and a sentence).

Sizes are in millimetres on the glass, not pixels, so a button is as big
under a finger on a 5-inch panel as on a 10-inch one;
``config.Display.px`` turns them into pixels for the screen in use.

No Kivy here: the screen layer reads these values (``Colour.rgba`` is the form
Kivy takes) and this module stays importable and testable anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

# WCAG 2.2: 1.4.3 (AA) and 1.4.6 (AAA) for text, 1.4.11 for controls and focus.
AA_TEXT = 4.5
AAA_TEXT = 7.0
NON_TEXT = 3.0

# Big enough for an unsteady or gloved finger: well above WCAG 2.5.5's 44 CSS px (about 12 mm).
TOUCH_TARGET_MM = 20.0


@dataclass(frozen=True)
class Colour:
    """An sRGB colour, 0-255 a channel."""

    r: int
    g: int
    b: int

    def __post_init__(self) -> None:
        for channel in (self.r, self.g, self.b):
            if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel <= 255:
                raise ValueError(f"a colour channel must be a whole number 0-255, not {channel!r}")

    @classmethod
    def from_hex(cls, text: str) -> Colour:
        """``"#1d6b74"`` or ``"1D6B74"``."""
        match = re.fullmatch(r"#?([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})", text)
        if match is None:
            raise ValueError(f'a colour must be "#RRGGBB", not {text!r}')
        return cls(*(int(part, 16) for part in match.groups()))

    @property
    def hex(self) -> str:
        return f"#{self.r:02x}{self.g:02x}{self.b:02x}"

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        """0-1 floats with full opacity, as Kivy's ``Color`` and ``color`` properties take."""
        return (self.r / 255, self.g / 255, self.b / 255, 1.0)

    def __str__(self) -> str:
        return self.hex


def _channel(value: int) -> float:
    """sRGB transfer function, inverted: a 0-255 channel to linear light."""
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: Colour) -> float:
    """WCAG 2.2 relative luminance: 0 for black, 1 for white."""
    return 0.2126 * _channel(colour.r) + 0.7152 * _channel(colour.g) + 0.0722 * _channel(colour.b)


def contrast_ratio(a: Colour, b: Colour) -> float:
    """WCAG 2.2 contrast ratio, 1 (none) to 21 (black on white); order does not matter."""
    la, lb = relative_luminance(a), relative_luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


@dataclass(frozen=True)
class Palette:
    """Every colour the screen uses, by role; ``on_x`` is the text drawn on ``x``.

    ``min_text_ratio`` is the contrast every text pair must reach. Secondary
    buttons and text fields get an ``outline`` so their shape shows even where
    their fill is close to the background; the focus ring is drawn with a gap,
    against the background or surface.
    """

    name: str
    min_text_ratio: float
    background: Colour
    surface: Colour  # cards and dialogs
    text: Colour
    muted_text: Colour  # hints and secondary lines, still fully readable
    primary: Colour  # the one next step on each screen
    on_primary: Colour
    secondary: Colour  # back, change language, and other choices
    on_secondary: Colour
    danger: Colour  # end call, emergency; also error text
    on_danger: Colour
    warning: Colour  # banners: door open, network lost, are you still there
    on_warning: Colour
    outline: Colour  # borders of secondary buttons and fields
    focus: Colour  # the focus ring
    success: Colour  # text and icons: camera found, connected

    def colours(self) -> dict[str, Colour]:
        """Each colour by its role name."""
        return {
            f.name: value
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), Colour)
        }


_hex = Colour.from_hex

# Calm and friendly: warm paper, dark slate text, deep teal for the way forward.
NORMAL = Palette(
    name="normal",
    min_text_ratio=AA_TEXT,
    background=_hex("#f5f3ee"),
    surface=_hex("#ffffff"),
    text=_hex("#1e2a32"),
    muted_text=_hex("#4f5b63"),
    primary=_hex("#1d6b74"),
    on_primary=_hex("#ffffff"),
    secondary=_hex("#dcebec"),
    on_secondary=_hex("#163f45"),
    danger=_hex("#b42318"),
    on_danger=_hex("#ffffff"),
    warning=_hex("#f6d58e"),
    on_warning=_hex("#3d2a00"),
    outline=_hex("#6b7a82"),
    focus=_hex("#2456c7"),
    success=_hex("#2b6b34"),
)

# Light on black: less glare in a small closed room; bright fills with black text.
HIGH_CONTRAST = Palette(
    name="high contrast",
    min_text_ratio=AAA_TEXT,
    background=_hex("#000000"),
    surface=_hex("#1c1c1c"),
    text=_hex("#ffffff"),
    muted_text=_hex("#d6d6d6"),
    primary=_hex("#ffe14d"),
    on_primary=_hex("#000000"),
    secondary=_hex("#a8d8ff"),
    on_secondary=_hex("#000000"),
    danger=_hex("#ff8a80"),
    on_danger=_hex("#000000"),
    warning=_hex("#ffb366"),
    on_warning=_hex("#000000"),
    outline=_hex("#ffffff"),
    focus=_hex("#00e5ff"),
    success=_hex("#7ee08a"),
)


def palette(high_contrast: bool) -> Palette:
    return HIGH_CONTRAST if high_contrast else NORMAL


Pair = tuple[str, Colour, Colour]


def text_pairs(p: Palette) -> list[Pair]:
    """Every (name, text colour, colour behind it) the UI draws; each must reach the ratio."""
    return [
        ("text on background", p.text, p.background),
        ("text on surface", p.text, p.surface),
        ("muted text on background", p.muted_text, p.background),
        ("muted text on surface", p.muted_text, p.surface),
        ("primary button text", p.on_primary, p.primary),
        ("secondary button text", p.on_secondary, p.secondary),
        ("danger button text", p.on_danger, p.danger),
        ("warning banner text", p.on_warning, p.warning),
        ("error text on background", p.danger, p.background),
        ("error text on surface", p.danger, p.surface),
        ("success text on background", p.success, p.background),
        ("success text on surface", p.success, p.surface),
    ]


def non_text_pairs(p: Palette) -> list[Pair]:
    """Shapes that must be seen, not read (WCAG 1.4.11, 3:1): buttons and the focus ring."""
    return [
        ("focus ring on background", p.focus, p.background),
        ("focus ring on surface", p.focus, p.surface),
        ("primary button on background", p.primary, p.background),
        ("primary button on surface", p.primary, p.surface),
        ("danger button on background", p.danger, p.background),
        ("danger button on surface", p.danger, p.surface),
        ("outline on background", p.outline, p.background),
        ("outline on surface", p.outline, p.surface),
    ]


def weak_pairs(p: Palette) -> list[tuple[str, float]]:
    """Each pair below its required contrast, with its ratio; empty for a good palette."""
    checks = [(pair, p.min_text_ratio) for pair in text_pairs(p)]
    checks += [(pair, NON_TEXT) for pair in non_text_pairs(p)]
    out = []
    for (name, fg, bg), needed in checks:
        ratio = contrast_ratio(fg, bg)
        if ratio < needed:
            out.append((name, ratio))
    return out


@dataclass(frozen=True)
class FontSizes:
    """Em heights in millimetres on the glass (1 pt = 0.353 mm)."""

    body: float
    title: float
    button: float


# Body about 14 pt at arm's length; large text about 20 pt, above large print's 18 pt.
NORMAL_TEXT = FontSizes(body=5.0, title=7.5, button=6.0)
LARGE_TEXT = FontSizes(body=7.0, title=10.0, button=8.0)


def font_sizes(large_text: bool) -> FontSizes:
    return LARGE_TEXT if large_text else NORMAL_TEXT
