"""What the screen shows, as plain data: ``present(booth, ui, ctx) -> View``.

The Kivy layer draws a :class:`View` and sends back the :class:`Action` a
resident touched; it decides nothing. Choices that only change what is on
the glass (the keypad opened, the "something is wrong" panel, the end-call
question, larger text) live in :class:`UiState` and change through
:func:`reduce`; everything that changes the visit is an :class:`Intent` for
the state machine. Both are pure, so every screen can be checked in every
language without rendering it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from kiosk import texts
from kiosk.config import BoothConfig
from kiosk.i18n import Translator, language_name
from kiosk.session import Booth, BundleState, Intent, Message, State

CODE_MAX = 12
PIN_MAX = 8
SHOW_TOOLBAR = frozenset(
    {
        State.ATTRACT,
        State.NOTICE,
        State.DOOR_CHECK,
        State.CHECK_IN,
        State.DEVICE_CHECK,
        State.WAITING,
    }
)


class Style(StrEnum):
    """How a button looks; each also carries words, never colour alone."""

    PRIMARY = "primary"
    SECONDARY = "secondary"
    DANGER = "danger"


class Layout(StrEnum):
    """Which Kivy screen draws the view."""

    ATTRACT = "attract"
    MESSAGE = "message"
    KEYPAD = "keypad"
    DEVICE_CHECK = "device_check"
    CALL = "call"
    EMERGENCY = "emergency"


class Local(StrEnum):
    """Touches that only change what is on the screen."""

    SHOW_KEYPAD = "show_keypad"
    HIDE_KEYPAD = "hide_keypad"
    DIGIT = "digit"
    DELETE = "delete"
    CLEAR = "clear"
    PROBLEM = "problem"
    TRY_AGAIN = "try_again"
    PLAY_SOUND = "play_sound"
    ASK_END = "ask_end"
    KEEP_GOING = "keep_going"
    LARGER_TEXT = "larger_text"
    HIGH_CONTRAST = "high_contrast"
    READ_ALOUD = "read_aloud"
    VOLUME_UP = "volume_up"
    VOLUME_DOWN = "volume_down"
    TECHNICIAN = "technician"  # the hidden gesture: ask for the technician PIN
    SUBMIT_PIN = "submit_pin"
    CLOSE_PIN = "close_pin"


@dataclass(frozen=True)
class Action:
    """A touch target: either an intent for the visit or a local change of view."""

    label: str
    intent: Intent | None = None
    local: Local | None = None
    value: str = field(default="", repr=False)
    style: Style = Style.PRIMARY
    key: str = ""  # stable name for tests and speech: the intent or local name (+ value)

    @property
    def name(self) -> str:
        return self.key or (self.intent or self.local or "").__str__()


@dataclass(frozen=True)
class Overlay:
    """Something shown over the screen that must be answered (idle warning)."""

    title: str
    lines: tuple[str, ...]
    action: Action
    spoken: str = ""


@dataclass(frozen=True)
class View:
    state: State
    layout: Layout
    title: str
    body: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()
    banner: str = ""
    spoken: str = ""
    entry: str = field(default="", repr=False)  # the code typed so far, shown on the keypad
    keys: tuple[Action, ...] = ()  # keypad keys
    toggles: tuple[Action, ...] = ()
    languages: tuple[Action, ...] = ()
    overlay: Overlay | None = None
    touch_anywhere: Action | None = None
    language: str = "en"
    large_text: bool = False
    high_contrast: bool = False
    read_aloud: bool = False
    self_view: bool = False
    level_meter: bool = False
    remote_video: bool = False
    call_live: bool = False


@dataclass(frozen=True)
class UiState:
    """What the screen alone remembers; reset with every new visit."""

    panel: Local | None = None  # SHOW_KEYPAD, PROBLEM, ASK_END
    entry: str = field(default="", repr=False)
    large_text: bool = False
    high_contrast: bool = False
    read_aloud: bool = False
    volume: int = 6  # 0-10
    idle_seconds_left: int = 0
    pin_note: str = ""  # the technician PIN panel's last answer, already in words


def fresh_ui(config: BoothConfig) -> UiState:
    """The screen as a new resident finds it: the booth's configured accessibility."""
    d = config.display
    return UiState(large_text=d.large_text, high_contrast=d.high_contrast, read_aloud=d.read_aloud)


def reduce(ui: UiState, action: Action) -> UiState:
    """Apply a local touch. Intents leave the screen's own state alone."""
    match action.local:
        case Local.SHOW_KEYPAD | Local.PROBLEM | Local.ASK_END | Local.TECHNICIAN:
            return replace(ui, panel=action.local, entry="", pin_note="")
        case Local.HIDE_KEYPAD | Local.TRY_AGAIN | Local.KEEP_GOING | Local.CLOSE_PIN:
            return replace(ui, panel=None, entry="", pin_note="")
        case Local.DIGIT:
            limit = PIN_MAX if ui.panel is Local.TECHNICIAN else CODE_MAX
            return replace(ui, entry=(ui.entry + action.value)[:limit])
        case Local.DELETE:
            return replace(ui, entry=ui.entry[:-1])
        case Local.CLEAR:
            return replace(ui, entry="")
        case Local.LARGER_TEXT:
            return replace(ui, large_text=not ui.large_text)
        case Local.HIGH_CONTRAST:
            return replace(ui, high_contrast=not ui.high_contrast)
        case Local.READ_ALOUD:
            return replace(ui, read_aloud=not ui.read_aloud)
        case Local.VOLUME_UP:
            return replace(ui, volume=min(10, ui.volume + 1))
        case Local.VOLUME_DOWN:
            return replace(ui, volume=max(0, ui.volume - 1))
    if action.intent is not None:
        return replace(ui, panel=None, entry="")
    return ui


def follow(ui: UiState, before: Booth, after: Booth, config: BoothConfig) -> UiState:
    """Keep the screen's own state in step with the visit: panels close when the state
    changes, and a new visit starts from the configured settings with nothing typed."""
    if after.state is before.state:
        return ui
    if after.state in (State.WIPING, State.ATTRACT):
        return replace(fresh_ui(config), idle_seconds_left=0)
    return replace(ui, panel=None, entry="")


@dataclass(frozen=True)
class Context:
    """What the presenter needs from outside the booth value."""

    config: BoothConfig
    waited_minutes: int = 0
    clinician_muted: bool = False  # as the clinician's console last told the booth
    clinician_camera_off: bool = False
    bundle_summary: str = ""  # the stage service's words on a USB bundle (technician only)
    bundle_reason: str = ""


def _translator(booth: Booth, ctx: Context) -> Translator:
    e = ctx.config.emergency
    staff = e.staff.get(booth.language) or next(iter(e.staff.values()), "staff")
    return Translator(
        booth.language,
        emergency_number=e.emergency_number,
        crisis_number=e.crisis_number,
        staff=staff,
    )


def _act(t: Translator, label: str, intent: Intent, style: Style = Style.PRIMARY) -> Action:
    return Action(t(label), intent=intent, style=style, key=intent.value)


def _local(t: Translator, label: str, local: Local, style: Style = Style.SECONDARY) -> Action:
    return Action(t(label), local=local, style=style, key=local.value)


def _keypad(t: Translator) -> tuple[Action, ...]:
    digits = [
        Action(d, local=Local.DIGIT, value=d, style=Style.SECONDARY, key=f"digit {d}")
        for d in "123456789"
    ]
    k = texts.KEYPAD
    return (
        *digits,
        _local(t, k.delete, Local.DELETE),
        Action("0", local=Local.DIGIT, value="0", style=Style.SECONDARY, key="digit 0"),
        _local(t, k.clear, Local.CLEAR),
    )


def present(booth: Booth, ui: UiState, ctx: Context) -> View:
    """Everything the screen shows for ``booth``, in the resident's language."""
    t = _translator(booth, ctx)
    state = booth.state
    base = View(
        state=state,
        layout=Layout.MESSAGE,
        title="",
        language=booth.language,
        large_text=ui.large_text,
        high_contrast=ui.high_contrast,
        read_aloud=ui.read_aloud,
        call_live=booth.call_live,
    )
    if state in SHOW_TOOLBAR:
        tg = texts.TOGGLES
        base = replace(
            base,
            toggles=(
                _local(t, tg.larger_text, Local.LARGER_TEXT),
                _local(t, tg.high_contrast, Local.HIGH_CONTRAST),
                _local(t, tg.read_aloud, Local.READ_ALOUD),
            ),
            languages=tuple(
                Action(
                    language_name(code),
                    intent=Intent.LANGUAGE,
                    value=code,
                    style=Style.PRIMARY if code == booth.language else Style.SECONDARY,
                    key=f"language {code}",
                )
                for code in ctx.config.site.languages
                if code != booth.language or state is State.ATTRACT
            ),
        )
    if ui.panel is Local.TECHNICIAN and state in TECHNICIAN_FROM:
        return _pin_panel(ui, t, base)
    view = _screen(booth, ui, ctx, t, base)
    if (
        booth.message is not None
        and booth.message is not Message.IDLE
        and state is not State.WRAP_UP
    ):
        m = texts.message_text(state, booth.message)
        view = replace(view, banner=_banner(t, m))
    elif not booth.network_up and state in CALL_OR_QUEUE:
        m = texts.MESSAGES[Message.CONNECTION_LOST]
        view = replace(view, banner=_banner(t, m))
    if booth.idle_warning:
        w = texts.IDLE_WARNING
        seconds = max(ui.idle_seconds_left, 0)
        view = replace(
            view,
            overlay=Overlay(
                title=t(w.title),
                lines=(t.plural(w.countdown, seconds, seconds=seconds),),
                action=_act(t, w.still_here, Intent.STILL_HERE),
                spoken=t(w.spoken),
            ),
        )
    return view


CALL_OR_QUEUE = frozenset({State.WAITING, State.IN_CALL, State.PRIVACY_PAUSE})


def _banner(t: Translator, m: texts.MessageText) -> str:
    """A message's title and lines as one sentence run: titles carry no full stop."""
    title = t(m.title)
    if title and title[-1] not in ".!?":
        title += "."
    return " ".join([title, *(t(line) for line in m.body)])


# Where staff may open technician mode: never over a resident's visit.
TECHNICIAN_FROM = frozenset({State.ATTRACT, State.OUT_OF_SERVICE, State.EMERGENCY})


def _pin_panel(ui: UiState, t: Translator, v: View) -> View:
    tt = texts.TECHNICIAN
    submit = Action(t(tt.unlock), local=Local.SUBMIT_PIN, style=Style.PRIMARY, key="submit_pin")
    return replace(
        v,
        layout=Layout.KEYPAD,
        title=t(tt.enter_pin),
        body=(ui.pin_note,) if ui.pin_note else (),
        entry="•" * len(ui.entry),
        keys=_keypad(t),
        actions=(submit, _local(t, texts.COMMON.back, Local.CLOSE_PIN)),
        toggles=(),
        languages=(),
    )


def pin_note(t: Translator, outcome: str, minutes: int) -> str:
    """Words for a refused PIN: wrong, or locked for ``minutes``."""
    tt = texts.TECHNICIAN
    if outcome == "locked":
        return t.plural(tt.locked, minutes, minutes=minutes)
    return t(tt.wrong_pin)


def _screen(booth: Booth, ui: UiState, ctx: Context, t: Translator, v: View) -> View:
    s = booth.state
    if s is State.ATTRACT:
        a = texts.ATTRACT
        start = _act(t, a.start, Intent.START)
        return _bundle_notice(
            booth,
            t,
            replace(
                v,
                layout=Layout.ATTRACT,
                title=t(a.title),
                body=tuple(t(x) for x in a.body),
                actions=(start,),
                touch_anywhere=start,
                spoken=t.spoken(a.spoken),
            ),
        )
    if s is State.NOTICE:
        n = texts.NOTICE
        return replace(
            v,
            title=t(n.title),
            body=tuple(t(x) for x in n.body),
            actions=(
                _act(t, n.accept, Intent.ACCEPT),
                _act(t, n.cancel, Intent.CANCEL, Style.SECONDARY),
            ),
            spoken=t.spoken(n.spoken),
        )
    if s is State.DOOR_CHECK:
        d = texts.DOOR_CHECK
        return replace(
            v,
            title=t(d.title),
            body=tuple(t(x) for x in d.body),
            actions=(_act(t, d.cancel, Intent.CANCEL, Style.SECONDARY),),
            spoken=t.spoken(d.spoken),
        )
    if s is State.CHECK_IN:
        c = texts.CHECK_IN
        if ui.panel is Local.SHOW_KEYPAD:
            submit = Action(
                t(c.keypad.submit),
                intent=Intent.APPOINTMENT,
                value=ui.entry,
                style=Style.PRIMARY,
                key=Intent.APPOINTMENT.value,
            )
            return replace(
                v,
                layout=Layout.KEYPAD,
                toggles=(),
                languages=(),
                title=t(c.code_prompt),
                entry=ui.entry,
                keys=_keypad(t),
                actions=(submit, _local(t, c.back, Local.HIDE_KEYPAD)),
                spoken=t.spoken(c.code_spoken),
            )
        return replace(
            v,
            title=t(c.title),
            body=tuple(t(x) for x in c.body),
            actions=(
                _local(t, c.appointment, Local.SHOW_KEYPAD, Style.PRIMARY),
                _act(t, c.walk_in, Intent.WALK_IN),
                _act(t, c.cancel, Intent.CANCEL, Style.SECONDARY),
            ),
            spoken=t.spoken(c.spoken),
        )
    if s is State.DEVICE_CHECK:
        d2 = texts.DEVICE_CHECK
        if ui.panel is Local.PROBLEM:
            return replace(
                v,
                title=t(d2.problem_title),
                body=tuple(t(x) for x in d2.problem_body),
                actions=(
                    _act(t, d2.audio_only, Intent.AUDIO_ONLY),
                    _local(t, d2.try_again, Local.TRY_AGAIN),
                    _act(t, d2.cancel, Intent.CANCEL, Style.SECONDARY),
                ),
                spoken=t.spoken(d2.problem_spoken),
            )
        # A device the watch found delivering nothing is said plainly, and the
        # way forward offered first: sound only for a camera, help for a microphone.
        lines = [t(x) for x in d2.body]
        said = [t.spoken(d2.spoken)]
        ok = _act(t, d2.devices_ok, Intent.DEVICES_OK)
        if not booth.camera_usable:
            lines[0] = t(d2.camera_fault)
            said = [t.spoken(d2.camera_fault_spoken)]
            ok = _act(t, d2.audio_only, Intent.AUDIO_ONLY)
        if not booth.microphone_usable:
            lines[1] = t(d2.microphone_fault)
            said.append(t.spoken(d2.microphone_fault_spoken))
        return replace(
            v,
            layout=Layout.DEVICE_CHECK,
            title=t(d2.title),
            body=tuple(lines),
            self_view=booth.camera_usable,
            level_meter=True,
            actions=(
                _local(t, d2.play_sound, Local.PLAY_SOUND),
                ok,
                _local(t, d2.problem, Local.PROBLEM),
                _act(t, d2.cancel, Intent.CANCEL, Style.SECONDARY),
            ),
            spoken=" ".join(said),
        )
    if s is State.WAITING:
        w = texts.WAITING
        return replace(
            v,
            title=t(w.title),
            body=(
                *(t(x) for x in w.body),
                t.plural(w.waited, ctx.waited_minutes, minutes=ctx.waited_minutes),
            ),
            actions=(_act(t, w.cancel, Intent.CANCEL, Style.SECONDARY),),
            spoken=t.spoken(w.spoken),
        )
    if s in (State.IN_CALL, State.PRIVACY_PAUSE):
        return _call(booth, ui, ctx, t, v)
    if s is State.WRAP_UP:
        wu = texts.WRAP_UP
        ended = wu.ended_by.get(booth.message) if booth.message else None
        title, body, spoken = (
            (ended.title, ended.body, ended.spoken) if ended else (wu.title, wu.body, wu.spoken)
        )
        return replace(
            v,
            title=t(title),
            body=tuple(t(x) for x in body),
            actions=(_act(t, wu.done, Intent.DONE),),
            spoken=t.spoken(spoken) if spoken else "",
        )
    if s is State.WIPING:
        wp = texts.WIPING
        return replace(
            v, title=t(wp.title), body=tuple(t(x) for x in wp.body), spoken=t.spoken(wp.spoken)
        )
    if s is State.EMERGENCY:
        e = texts.EMERGENCY
        body = tuple(t(x) for x in e.body)
        if booth.call_live:
            body = (*body, t(e.call_continues))
        return replace(
            v, layout=Layout.EMERGENCY, title=t(e.title), body=body, spoken=t.spoken(e.spoken)
        )
    if s is State.OUT_OF_SERVICE:
        o = texts.OUT_OF_SERVICE
        lines = [t(x) for x in o.body]
        if booth.updating:
            lines[0] = t(o.updating)
        return _bundle_notice(
            booth,
            t,
            replace(
                v,
                layout=Layout.EMERGENCY,
                title=t(o.title),
                body=tuple(lines),
                spoken=t.spoken(o.spoken),
            ),
        )
    # TECHNICIAN: unlocked already (the PIN was asked before the state machine heard of it).
    tt = texts.TECHNICIAN
    actions = [_act(t, tt.exit, Intent.EXIT_TECHNICIAN, Style.SECONDARY)]
    notes: tuple[str, ...] = ()
    match booth.bundle:
        case BundleState.READY:
            notes = (t(tt.bundle_ready, summary=ctx.bundle_summary),)
            actions.insert(0, _act(t, tt.apply_bundle, Intent.APPLY_BUNDLE))
            actions.insert(1, _act(t, tt.dismiss, Intent.DISMISS_BUNDLE, Style.SECONDARY))
        case BundleState.REFUSED | BundleState.FAILED:
            note = tt.bundle_refused if booth.bundle is BundleState.REFUSED else tt.bundle_failed
            notes = (t(note, reason=ctx.bundle_reason),)
            actions.insert(0, _act(t, tt.dismiss, Intent.DISMISS_BUNDLE, Style.SECONDARY))
        case BundleState.APPLYING:
            notes = (t(tt.bundle_applying),)
    if booth.emergency:
        actions.insert(0, _act(t, tt.clear_emergency, Intent.CLEAR_EMERGENCY, Style.DANGER))
    return replace(v, title=t(tt.title), body=notes, actions=tuple(actions))


def _bundle_notice(booth: Booth, t: Translator, v: View) -> View:
    """Between visits, a technician's stick is announced; technician mode (the hidden gesture
    and the PIN) is where it is applied, so a resident is offered nothing to press."""
    if booth.bundle not in (BundleState.READY, BundleState.REFUSED):
        return v
    return replace(v, banner=t(texts.ATTRACT.bundle_found))


def _call(booth: Booth, ui: UiState, ctx: Context, t: Translator, v: View) -> View:
    c = texts.IN_CALL
    paused = booth.state is State.PRIVACY_PAUSE
    notices: list[str] = []
    if ctx.clinician_muted:
        notices.append(t(c.clinician_muted))
    if ctx.clinician_camera_off:
        notices.append(t(c.clinician_camera_off))
    if booth.muted:
        notices.append(t(c.muted_notice))
    if booth.audio_only:
        notices.append(t(c.camera_off_notice))
    notices.append(f"{t(c.volume)}: {ui.volume} / 10")  # the volume buttons' answer, in words
    if ui.panel is Local.ASK_END:
        return replace(
            v,
            layout=Layout.MESSAGE,
            title=t(c.end_confirm),
            actions=(
                _act(t, c.end_yes, Intent.END_CALL, Style.DANGER),
                _local(t, c.end_no, Local.KEEP_GOING, Style.PRIMARY),
            ),
            spoken=t(c.end_confirm),
        )
    mute = (
        _act(t, c.unmute, Intent.UNMUTE, Style.SECONDARY)
        if booth.muted
        else _act(t, c.mute, Intent.MUTE, Style.SECONDARY)
    )
    camera = (
        _act(t, c.camera_on, Intent.CAMERA_ON, Style.SECONDARY)
        if booth.audio_only
        else _act(t, c.camera_off, Intent.CAMERA_OFF, Style.SECONDARY)
    )
    actions = (
        mute,
        camera,
        _local(t, c.quieter, Local.VOLUME_DOWN),
        _local(t, c.louder, Local.VOLUME_UP),
        _local(t, c.end_call, Local.ASK_END, Style.DANGER),
    )
    if paused:
        p = texts.PRIVACY_PAUSE
        return replace(
            v,
            layout=Layout.MESSAGE,
            title=t(p.title),
            body=tuple(t(x) for x in p.body),
            actions=(_local(t, c.end_call, Local.ASK_END, Style.DANGER),),
            spoken=t.spoken(p.spoken),
        )
    return replace(
        v,
        layout=Layout.CALL,
        title=t(c.title),
        body=tuple(notices),
        actions=actions,
        remote_video=True,
        self_view=not booth.audio_only,
        spoken=t.spoken(c.spoken),
    )
