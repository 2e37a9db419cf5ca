"""The palettes: every text pair the UI draws is readable, by WCAG 2.2's own arithmetic."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from kiosk import theme
from kiosk.theme import (
    HIGH_CONTRAST,
    NORMAL,
    Colour,
    Palette,
    contrast_ratio,
    non_text_pairs,
    text_pairs,
    weak_pairs,
)

BLACK = Colour(0, 0, 0)
WHITE = Colour(255, 255, 255)
PALETTES = [NORMAL, HIGH_CONTRAST]


# ------------------------------------------------------------ the arithmetic


def test_black_on_white_is_21() -> None:
    assert contrast_ratio(BLACK, WHITE) == pytest.approx(21.0)


def test_same_colour_is_1() -> None:
    grey = Colour.from_hex("#777777")
    assert contrast_ratio(grey, grey) == pytest.approx(1.0)


def test_777777_on_white_just_fails_aa() -> None:
    """The classic example: #777777 on white is 4.48:1, just under 4.5."""
    ratio = contrast_ratio(Colour.from_hex("#777777"), WHITE)
    assert ratio == pytest.approx(4.48, abs=0.005)
    assert ratio < theme.AA_TEXT


@pytest.mark.parametrize(
    ("fg", "bg", "expected"),
    [
        ("#767676", "#ffffff", 4.54),  # the lightest grey that passes AA on white
        ("#595959", "#ffffff", 7.00),  # the lightest grey that passes AAA on white
        ("#0000ff", "#ffffff", 8.59),
        ("#ff0000", "#ffffff", 4.00),
    ],
)
def test_known_ratios(fg: str, bg: str, expected: float) -> None:
    assert contrast_ratio(Colour.from_hex(fg), Colour.from_hex(bg)) == pytest.approx(
        expected, abs=0.01
    )


def test_order_does_not_matter() -> None:
    a, b = Colour.from_hex("#1d6b74"), Colour.from_hex("#f5f3ee")
    assert contrast_ratio(a, b) == contrast_ratio(b, a)


def test_dark_channels_use_the_linear_part_of_the_srgb_curve() -> None:
    """Channels at or below 0.04045 (10/255) are divided by 12.92, not raised to 2.4."""
    assert theme.relative_luminance(Colour(10, 10, 10)) == pytest.approx(10 / 255 / 12.92)
    assert theme.relative_luminance(WHITE) == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["#12345", "12345g", "rgb(1,2,3)", "#1234567", ""])
def test_bad_hex_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="RRGGBB"):
        Colour.from_hex(text)


@pytest.mark.parametrize("channels", [(256, 0, 0), (-1, 0, 0), (True, 0, 0), (1.5, 0, 0)])
def test_bad_channel_is_refused(channels: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="0-255"):
        Colour(*channels)


def test_colour_forms_for_the_screen() -> None:
    teal = Colour.from_hex("#1D6B74")
    assert teal.hex == str(teal) == "#1d6b74"
    assert teal.rgba == pytest.approx((0x1D / 255, 0x6B / 255, 0x74 / 255, 1.0))


# -------------------------------------------------------------- the palettes


@pytest.mark.parametrize("palette", PALETTES, ids=lambda p: p.name)
def test_every_text_pair_meets_the_palette_ratio(palette: Palette) -> None:
    for name, fg, bg in text_pairs(palette):
        assert contrast_ratio(fg, bg) >= palette.min_text_ratio, name


@pytest.mark.parametrize("palette", PALETTES, ids=lambda p: p.name)
def test_buttons_and_focus_ring_stand_out(palette: Palette) -> None:
    for name, fg, bg in non_text_pairs(palette):
        assert contrast_ratio(fg, bg) >= theme.NON_TEXT, name


@pytest.mark.parametrize("palette", PALETTES, ids=lambda p: p.name)
def test_nothing_is_reported_weak(palette: Palette) -> None:
    assert weak_pairs(palette) == []


def test_the_ratios_are_aa_and_aaa() -> None:
    assert (NORMAL.min_text_ratio, HIGH_CONTRAST.min_text_ratio) == (4.5, 7.0)
    assert theme.palette(high_contrast=False) is NORMAL
    assert theme.palette(high_contrast=True) is HIGH_CONTRAST


@pytest.mark.parametrize("palette", PALETTES, ids=lambda p: p.name)
def test_every_text_colour_is_checked(palette: Palette) -> None:
    """A colour that carries text but is left out of text_pairs would go unchecked."""
    foregrounds = {fg for _, fg, _ in text_pairs(palette)}
    for role in ("text", "muted_text", "on_primary", "on_secondary", "on_danger", "on_warning"):
        assert getattr(palette, role) in foregrounds, role
    assert palette.success in foregrounds
    names = [name for name, _, _ in text_pairs(palette)]
    assert len(names) == len(set(names))


def test_palette_lists_its_colours_by_role() -> None:
    colours = NORMAL.colours()
    assert set(colours) >= {"background", "primary", "on_primary", "danger", "focus", "success"}
    assert "name" not in colours and "min_text_ratio" not in colours


# ------------------------------------------------------------------- twins


def test_a_weak_text_pair_is_reported() -> None:
    """Twin of the palette checks: grey #777777 hints on white must be caught."""
    weak = dataclasses.replace(NORMAL, surface=WHITE, muted_text=Colour.from_hex("#777777"))
    found = weak_pairs(weak)
    assert [name for name, _ in found] == ["muted text on background", "muted text on surface"]
    assert found[1][1] == pytest.approx(4.48, abs=0.005)


def test_a_normal_palette_is_not_high_contrast_enough() -> None:
    """Holding the normal colours to 7:1 finds pairs that fail: the AAA check has teeth."""
    strict = dataclasses.replace(NORMAL, min_text_ratio=theme.AAA_TEXT)
    assert weak_pairs(strict)


def test_an_invisible_focus_ring_is_reported() -> None:
    faint = dataclasses.replace(HIGH_CONTRAST, focus=Colour.from_hex("#333333"))
    assert [name for name, _ in weak_pairs(faint)] == [
        "focus ring on background",
        "focus ring on surface",
    ]


# ------------------------------------------------------------------- sizes


def test_large_text_is_larger_everywhere() -> None:
    normal, large = theme.font_sizes(large_text=False), theme.font_sizes(large_text=True)
    assert (normal, large) == (theme.NORMAL_TEXT, theme.LARGE_TEXT)
    for f in dataclasses.fields(theme.FontSizes):
        assert getattr(large, f.name) > getattr(normal, f.name), f.name
    assert large.body >= 18 * 0.3528  # large print: at least 18 pt


def test_touch_target_fits_the_smallest_panel() -> None:
    """Three 20 mm buttons must fit side by side on a 7-inch 800x480 panel."""
    assert theme.TOUCH_TARGET_MM == 20.0
    px_per_mm = (800**2 + 480**2) ** 0.5 / (7 * 25.4)
    assert 3 * theme.TOUCH_TARGET_MM * px_per_mm < 480


def test_theme_does_not_import_kivy() -> None:
    """The screen layer reads the theme; the theme must stay importable without a display."""
    tree = ast.parse(Path(theme.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert "kivy" not in imported
    assert imported <= {"__future__", "re", "dataclasses"}
