"""The presenter: what each screen shows, in each language, without rendering it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kiosk import config
from kiosk.presenter import (
    Action,
    Context,
    Layout,
    Local,
    UiState,
    follow,
    fresh_ui,
    present,
    reduce,
)
from kiosk.session import Booth, Intent, Message, State
from tests.kiosk.test_controller import MINIMAL
from tests.kiosk.test_session import REPRESENTATIVES

CFG = config.loads(MINIMAL)
CTX = Context(CFG)
LANGS = CFG.site.languages


@pytest.mark.parametrize("name", sorted(REPRESENTATIVES))
@pytest.mark.parametrize("lang", LANGS)
def test_every_state_has_words_and_labelled_targets(name: str, lang: str) -> None:
    view = present(replace(REPRESENTATIVES[name], language=lang), UiState(), CTX)
    assert view.title.strip()
    for action in (*view.actions, *view.toggles, *view.languages, *view.keys):
        assert action.label.strip(), action
        assert (action.intent is None) != (action.local is None), action


def test_spanish_screens_are_in_spanish() -> None:
    for name, booth in REPRESENTATIVES.items():
        en = present(replace(booth, language="en"), UiState(), CTX)
        es = present(replace(booth, language="es"), UiState(), CTX)
        assert en.title != es.title, name
        assert en.body == () or en.body != es.body, name


@pytest.mark.parametrize("state", [State.NOTICE, State.EMERGENCY, State.OUT_OF_SERVICE])
def test_safety_screens_show_911_and_988_from_config(state: State) -> None:
    cfg = replace(
        CFG, emergency=replace(CFG.emergency, emergency_number="112", crisis_number="024")
    )
    booth = Booth(state=state, emergency=state is State.EMERGENCY, resume=State.ATTRACT)
    view = present(booth, UiState(), Context(cfg))
    text = " ".join(view.body)
    assert "112" in text and "024" in text
    assert "1 1 2" in view.spoken, "numbers are spoken digit by digit"


def test_emergency_has_no_button_a_resident_could_dismiss_it_with() -> None:
    view = present(
        Booth(state=State.EMERGENCY, emergency=True, resume=State.IN_CALL), UiState(), CTX
    )
    assert view.actions == () and view.layout is Layout.EMERGENCY
    assert any("video" in line for line in view.body), "a call going on underneath is mentioned"


def test_attract_offers_every_language_and_touch_anywhere() -> None:
    view = present(Booth(), UiState(), CTX)
    assert [a.value for a in view.languages] == list(LANGS)
    assert view.touch_anywhere is not None and view.touch_anywhere.intent is Intent.START


def test_keypad_panel_sends_the_typed_code_with_the_intent() -> None:
    ui = reduce(UiState(), Action("", local=Local.SHOW_KEYPAD))
    for digit in "98765":
        ui = reduce(ui, Action(digit, local=Local.DIGIT, value=digit))
    ui = reduce(ui, Action("", local=Local.DELETE))
    view = present(Booth(state=State.CHECK_IN), ui, CTX)
    assert view.layout is Layout.KEYPAD and view.entry == "9876"
    submit = next(a for a in view.actions if a.intent is Intent.APPOINTMENT)
    assert submit.value == "9876"
    assert "9876" not in repr(view) + repr(ui), "typed codes stay out of reprs and logs"


def test_codes_and_pins_are_length_limited() -> None:
    ui = UiState(panel=Local.SHOW_KEYPAD)
    for _ in range(40):
        ui = reduce(ui, Action("1", local=Local.DIGIT, value="1"))
    assert len(ui.entry) == 12
    pin = UiState(panel=Local.TECHNICIAN)
    for _ in range(40):
        pin = reduce(pin, Action("1", local=Local.DIGIT, value="1"))
    assert len(pin.entry) == 8


def test_the_technician_pin_panel_never_covers_a_visit() -> None:
    ui = UiState(panel=Local.TECHNICIAN)
    for state in State:
        view = present(Booth(state=state), ui, CTX)
        shown = any(a.local is Local.SUBMIT_PIN for a in view.actions)
        assert shown == (state in (State.ATTRACT, State.OUT_OF_SERVICE, State.EMERGENCY)), state


def test_a_new_visit_starts_from_the_configured_settings_with_nothing_typed() -> None:
    ui = UiState(panel=Local.SHOW_KEYPAD, entry="12", large_text=True, high_contrast=True)
    after = follow(ui, Booth(state=State.WRAP_UP), Booth(state=State.WIPING), CFG)
    assert after == fresh_ui(CFG)
    kept = follow(ui, Booth(state=State.NOTICE), Booth(state=State.CHECK_IN), CFG)
    assert kept.large_text and kept.high_contrast and kept.entry == "" and kept.panel is None


def test_messages_show_as_a_banner_and_idle_as_an_overlay() -> None:
    lost = present(Booth(state=State.IN_CALL, message=Message.CONNECTION_LOST), UiState(), CTX)
    assert lost.banner.startswith("The connection was lost. We are trying")
    idle = present(Booth(state=State.NOTICE, idle_warning=True), UiState(idle_seconds_left=7), CTX)
    assert idle.overlay is not None and "7" in idle.overlay.lines[0]
    assert idle.overlay.action.intent is Intent.STILL_HERE


def test_in_call_controls_follow_mute_and_camera() -> None:
    view = present(Booth(state=State.IN_CALL, muted=True, audio_only=True), UiState(), CTX)
    intents = {a.intent for a in view.actions}
    assert {Intent.UNMUTE, Intent.CAMERA_ON} <= intents
    assert len(view.body) == 3, "both choices are explained in words, and the volume"
    louder = reduce(UiState(), Action("", local=Local.VOLUME_UP))
    assert present(Booth(state=State.IN_CALL), louder, CTX).body[-1] == "Volume: 7 / 10"
    ask = present(Booth(state=State.IN_CALL), UiState(panel=Local.ASK_END), CTX)
    assert [a.intent for a in ask.actions] == [Intent.END_CALL, None]


def test_language_buttons_name_each_language_in_its_own_words_from_its_catalog() -> None:
    from kiosk.i18n import language_name, languages, translations

    for code in languages():
        assert translations(code).info().get("language-name"), f"{code} catalog lacks Language-Name"
    assert [a.label for a in present(Booth(), UiState(), CTX).languages] == [
        language_name(c) for c in LANGS
    ]
    assert language_name("es") == "Español"
    assert languages() == config.SHIPPED_LANGUAGES, "config accepts exactly the shipped catalogs"


def test_the_resident_is_told_when_the_clinician_turns_microphone_or_camera_off() -> None:
    quiet = Context(CFG, clinician_muted=True, clinician_camera_off=True)
    body = present(Booth(state=State.IN_CALL), UiState(), quiet).body
    assert body[:2] == (
        "The health professional has turned their microphone off.",
        "The health professional has turned their camera off.",
    )
    es = present(Booth(state=State.IN_CALL, language="es"), UiState(), quiet).body
    assert es[0] == "El profesional de la salud apagó su micrófono."
    assert len(present(Booth(state=State.IN_CALL), UiState(), CTX).body) == 1, "only the volume"
