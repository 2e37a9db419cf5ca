"""The visit as a pure state machine: ``step(booth, event) -> (booth, effects)``.

No I/O, no clock, no Kivy. Time passes only as :class:`Timeout` events for
timers the machine itself asked for with ``start_timer`` effects, so every
path through a visit can be tested by feeding events.

Two rules hold in every state and are applied before the per-state table:

* **Emergency.** Holding the button raises the alarm from any state. The
  visit underneath (a call, a queue place) carries on; it is remembered in
  ``resume`` and shown again when staff clear the emergency.
* **Door.** A resident's privacy depends on the door, so an open door always
  pauses media in a call and always sends pre-call steps back to the door
  check. A door whose wiring has failed counts as open.

The per-state table (:data:`TABLE`) then reads top to bottom, one row per
state and trigger. Pairs not in the table change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

from hardware.events import (
    DeviceAdded,
    DeviceKind,
    DeviceRemoved,
    DoorClosed,
    DoorOpened,
    EmergencyHeld,
    EmergencyReleased,
    HardwareEvent,
    HardwareFault,
    HardwareRestored,
)


class State(StrEnum):
    """What the booth is doing; each has a screen of the same name."""

    ATTRACT = "attract"
    NOTICE = "notice"  # language choice and privacy notice
    DOOR_CHECK = "door_check"
    CHECK_IN = "check_in"
    DEVICE_CHECK = "device_check"
    WAITING = "waiting"
    IN_CALL = "in_call"
    PRIVACY_PAUSE = "privacy_pause"
    WRAP_UP = "wrap_up"
    WIPING = "wiping"
    EMERGENCY = "emergency"
    OUT_OF_SERVICE = "out_of_service"
    TECHNICIAN = "technician"


class Intent(StrEnum):
    """What a resident (or technician) asked for by touching the screen."""

    ACTIVITY = "activity"  # any touch: keeps the visit from idling out
    START = "start"
    LANGUAGE = "language"  # value: language code
    ACCEPT = "accept"  # privacy notice read
    APPOINTMENT = "appointment"  # an appointment code was entered (kept by the controller)
    WALK_IN = "walk_in"
    DEVICES_OK = "devices_ok"
    AUDIO_ONLY = "audio_only"
    CANCEL = "cancel"
    MUTE = "mute"
    UNMUTE = "unmute"
    CAMERA_OFF = "camera_off"
    CAMERA_ON = "camera_on"
    END_CALL = "end_call"
    STILL_HERE = "still_here"
    DONE = "done"
    CLEAR_EMERGENCY = "clear_emergency"  # technician mode only
    EXIT_TECHNICIAN = "exit_technician"
    APPLY_BUNDLE = "apply_bundle"  # technician mode only: a staged USB bundle
    DISMISS_BUNDLE = "dismiss_bundle"  # technician mode only


class Timer(StrEnum):
    """Timers the machine starts and cancels through effects; durations come from config."""

    IDLE_WARNING = "idle_warning"
    IDLE_RESET = "idle_reset"
    WAIT_LIMIT = "wait_limit"
    WRAP_UP = "wrap_up"
    NETWORK_GRACE = "network_grace"
    EMERGENCY_AUTO_CLEAR = "emergency_auto_clear"


class Do(StrEnum):
    """Effects the controller carries out."""

    BEGIN_VISIT = "begin_visit"
    WIPE = "wipe"
    OCCUPANCY_LIGHT_ON = "occupancy_light_on"
    OCCUPANCY_LIGHT_OFF = "occupancy_light_off"
    ALARM_ON = "alarm_on"
    ALARM_OFF = "alarm_off"
    ALERT_STAFF = "alert_staff"
    TELL_CLINICIAN = (
        "tell_clinician"  # detail: door_open, door_closed, emergency, emergency_cleared
    )
    OPEN_DEVICES = "open_devices"
    CLOSE_DEVICES = "close_devices"
    JOIN_QUEUE = "join_queue"
    LEAVE_QUEUE = "leave_queue"
    ACCEPT_CALL = "accept_call"
    END_CALL = "end_call"
    REBUILD_CALL = "rebuild_call"
    PAUSE_MEDIA = "pause_media"
    RESUME_MEDIA = "resume_media"
    MICROPHONE_ON = "microphone_on"
    MICROPHONE_OFF = "microphone_off"
    CAMERA_ON = "camera_on"
    CAMERA_OFF = "camera_off"
    APPLY_BUNDLE = "apply_bundle"
    START_TIMER = "start_timer"  # detail: Timer
    CANCEL_TIMER = "cancel_timer"  # detail: Timer


class Message(StrEnum):
    """Why the booth is where it is, for the screen to explain in the resident's words."""

    CODE_NOT_FOUND = "code_not_found"
    NO_CLINICIAN = "no_clinician"
    CONNECTION_LOST = "connection_lost"
    CAMERA_LOST = "camera_lost"
    IDLE = "idle"


@dataclass(frozen=True)
class Effect:
    """One thing for the controller to do. ``detail`` is a fixed word, never resident data."""

    do: Do
    detail: str = ""

    def describe(self) -> dict[str, str]:
        out = {"effect": self.do.value}
        if self.detail:
            out["detail"] = self.detail
        return out


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Touch:
    """A resident's intent from the screen. ``value`` never appears in a repr or a log."""

    intent: Intent
    value: str = field(default="", repr=False)


@dataclass(frozen=True)
class EmergencyCleared:
    """Staff cleared the emergency (technician mode, or the configured auto-clear)."""


@dataclass(frozen=True)
class NetworkLost:
    """The hub or the call's media stopped answering."""


@dataclass(frozen=True)
class NetworkRestored:
    """The hub answers again."""


@dataclass(frozen=True)
class ClinicianAnswered:
    """A clinician took this booth from the waiting queue (or re-offered after a rebuild)."""


@dataclass(frozen=True)
class CallEnded:
    """The clinician or the hub ended the call or dropped the booth from the queue."""


@dataclass(frozen=True)
class CodeRefused:
    """The hub knows no appointment for the code entered."""


@dataclass(frozen=True)
class Timeout:
    """A timer started by a ``start_timer`` effect ran out."""

    timer: Timer


@dataclass(frozen=True)
class WipeDone:
    """Everything of the visit has been dropped."""


@dataclass(frozen=True)
class TechnicianUnlocked:
    """A technician gave the right PIN behind the hidden gesture."""


class BundleState(StrEnum):
    """A technician's USB bundle, as the privileged stage service found it."""

    READY = "ready"  # verified and staged: a technician may apply it
    REFUSED = "refused"  # unsigned, tampered, malformed: the technician screen says why
    APPLYING = "applying"  # asked for; the booth is restarted when it is applied
    FAILED = "failed"


@dataclass(frozen=True)
class UpdateHold:
    """The updater asks the booth to stay out of use while it switches releases (or lets go)."""

    on: bool


@dataclass(frozen=True)
class BundleNews:
    """The stage service's word on a USB stick's bundle."""

    state: BundleState


SessionEvent = (
    Touch
    | EmergencyCleared
    | NetworkLost
    | NetworkRestored
    | ClinicianAnswered
    | CallEnded
    | CodeRefused
    | Timeout
    | WipeDone
    | TechnicianUnlocked
    | BundleNews
    | UpdateHold
)
Event = SessionEvent | HardwareEvent


# ---------------------------------------------------------------- the booth


IDLE_STATES = frozenset({State.NOTICE, State.DOOR_CHECK, State.CHECK_IN, State.DEVICE_CHECK})
# Pre-call states where a resident may say or show something private: door must be shut.
PRIVATE_PRE_CALL = frozenset({State.CHECK_IN, State.DEVICE_CHECK, State.WAITING})
CALL_STATES = frozenset({State.IN_CALL, State.PRIVACY_PAUSE})
VISIT_STATES = IDLE_STATES | PRIVATE_PRE_CALL | CALL_STATES | {State.WRAP_UP, State.WIPING}
AUDIO_DEVICES = (DeviceKind.MICROPHONE, DeviceKind.SPEAKER)


@dataclass(frozen=True)
class Booth:
    """Everything the machine knows. Holds no resident data beyond the chosen language."""

    state: State = State.ATTRACT
    resume: State | None = None  # the visit state under an emergency, technician or door check
    language: str = "en"
    emergency: bool = False
    door_open: bool = False
    network_up: bool = True
    faults: frozenset[str] = frozenset()
    missing: frozenset[DeviceKind] = frozenset()
    broken: frozenset[DeviceKind] = frozenset()  # present, but delivering nothing (frozen, silent)
    idle_warning: bool = False
    audio_only: bool = False
    muted: bool = False
    headset: bool = False
    bundle: BundleState | None = None
    updating: bool = False  # held out of use for a release switch (between visits only)
    message: Message | None = None

    @property
    def visit_state(self) -> State:
        """The state of the visit underneath any overlay."""
        if self.state in (State.EMERGENCY, State.TECHNICIAN) or (
            self.state is State.DOOR_CHECK and self.resume is not None
        ):
            return self.resume or State.ATTRACT
        return self.state

    @property
    def camera_usable(self) -> bool:
        return DeviceKind.CAMERA not in self.missing | self.broken

    @property
    def microphone_usable(self) -> bool:
        """A headset's own microphone counts: it takes over from the booth's."""
        return self.headset or DeviceKind.MICROPHONE not in self.missing | self.broken

    @property
    def call_live(self) -> bool:
        return self.visit_state in CALL_STATES

    @property
    def in_visit(self) -> bool:
        return self.visit_state in VISIT_STATES

    @property
    def problem(self) -> str | None:
        """Why no new visit can start: ``updating``, ``hardware``, ``network`` or None."""
        if self.updating:
            return "updating"
        if self.faults:
            return "hardware"
        if not self.headset and any(d in self.missing for d in AUDIO_DEVICES):
            return "hardware"
        if not self.network_up:
            return "network"
        return None


def initial(language: str = "en") -> Booth:
    """The booth at power-on: attract screen, door assumed closed until the sensor says."""
    return Booth(language=language)


# ---------------------------------------------------------------- helpers


def _fx(do: Do, detail: str = "") -> Effect:
    return Effect(do, detail)


def _timer(start: bool, timer: Timer) -> Effect:
    return Effect(Do.START_TIMER if start else Do.CANCEL_TIMER, timer.value)


def _timers_of(b: Booth) -> set[Timer]:
    """Timers that run while the booth is as ``b`` says."""
    out: set[Timer] = set()
    if b.state in IDLE_STATES:
        out.add(Timer.IDLE_RESET if b.idle_warning else Timer.IDLE_WARNING)
    if b.state is State.WAITING:
        out.add(Timer.WAIT_LIMIT)
    if b.state is State.WRAP_UP:
        out.add(Timer.WRAP_UP)
    if b.state is State.EMERGENCY:
        out.add(Timer.EMERGENCY_AUTO_CLEAR)
    if not b.network_up and b.state in CALL_STATES | {State.WAITING}:
        out.add(Timer.NETWORK_GRACE)
    return out


def _settle(old: Booth, new: Booth, effects: list[Effect]) -> tuple[Booth, list[Effect]]:
    """Cancel timers the old booth ran and the new one does not; start the new ones."""
    before, after = _timers_of(old), _timers_of(new)
    fx = [e for t in sorted(before - after) if (e := _timer(False, t)) not in effects]
    fx += effects
    fx += [e for t in sorted(after - before) if (e := _timer(True, t)) not in effects]
    if new.state not in IDLE_STATES and new.idle_warning:
        new = replace(new, idle_warning=False)
    return new, fx


def _restart_idle(b: Booth) -> tuple[Booth, list[Effect]]:
    """A touch in an idle-watched state: forget any warning and start the count again."""
    fx = [_timer(False, Timer.IDLE_RESET if b.idle_warning else Timer.IDLE_WARNING)]
    fx.append(_timer(True, Timer.IDLE_WARNING))
    return replace(b, idle_warning=False), fx


def _enter(b: Booth, target: State, effects: list[Effect]) -> tuple[Booth, list[Effect]]:
    """Move the visit to ``target``, keeping the door rule: private steps need a shut door."""
    if b.door_open and target in PRIVATE_PRE_CALL:
        return replace(b, state=State.DOOR_CHECK, resume=target), effects
    if b.door_open and target is State.IN_CALL:
        return replace(b, state=State.PRIVACY_PAUSE, resume=None), [
            *effects,
            _fx(Do.PAUSE_MEDIA),
            _fx(Do.TELL_CLINICIAN, "door_open"),
        ]
    return replace(b, state=target, resume=None), effects


def _idle_or_problem(b: Booth) -> State:
    return State.OUT_OF_SERVICE if b.problem else State.ATTRACT


def _wipe(b: Booth, extra: list[Effect]) -> tuple[Booth, list[Effect]]:
    """End the visit now: leave the queue or call, close devices, drop the visit's data."""
    fx = list(extra)
    closed_already = b.visit_state is State.WRAP_UP
    if b.visit_state is State.WAITING:
        fx.append(_fx(Do.LEAVE_QUEUE))
    if b.call_live and not any(e.do is Do.END_CALL for e in fx):
        fx.append(_fx(Do.END_CALL))
    if not closed_already:
        fx.append(_fx(Do.CLOSE_DEVICES))
    fx.append(_fx(Do.WIPE))
    return replace(b, state=State.WIPING, resume=None, message=None), fx


def _wrap_up(b: Booth, message: Message | None, extra: list[Effect]) -> tuple[Booth, list[Effect]]:
    fx = [*extra, _fx(Do.CLOSE_DEVICES)]
    return replace(b, state=State.WRAP_UP, resume=None, message=message), fx


# ---------------------------------------------------------------- the table

Handler = Callable[[Booth, Event], tuple[Booth, list[Effect]]]


def _go(target: State, *effects: Effect) -> Handler:
    return lambda b, e: _enter(b, target, list(effects))


def _start(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    lang = (
        e.value if isinstance(e, Touch) and e.intent is Intent.LANGUAGE and e.value else b.language
    )
    b = replace(b, language=lang, message=None, audio_only=False, muted=False)
    return _enter(b, State.NOTICE, [_fx(Do.BEGIN_VISIT), _fx(Do.OCCUPANCY_LIGHT_ON)])


def _language(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    assert isinstance(e, Touch)
    return replace(b, language=e.value or b.language), []


def _accept_notice(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return _enter(b, State.CHECK_IN, [])


def _to_device_check(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return _enter(replace(b, message=None), State.DEVICE_CHECK, [_fx(Do.OPEN_DEVICES)])


def _join(audio_only: bool) -> Handler:
    def handler(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
        fx = [_fx(Do.CAMERA_OFF)] if audio_only else []
        b = replace(b, audio_only=audio_only or b.audio_only)
        return _enter(b, State.WAITING, [*fx, _fx(Do.JOIN_QUEUE)])

    return handler


def _answered(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return _enter(b, State.IN_CALL, [_fx(Do.ACCEPT_CALL)])


def _answered_at_door(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    # Queued, then the door opened, then the clinician answered: the call starts paused.
    if b.resume is not State.WAITING:
        return b, []
    return _enter(b, State.IN_CALL, [_fx(Do.ACCEPT_CALL)])


def _code_refused(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if b.visit_state is not State.WAITING:
        return b, []
    b = replace(b, message=Message.CODE_NOT_FOUND)
    return _enter(b, State.CHECK_IN, [_fx(Do.LEAVE_QUEUE)])


def _cancel(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return _wipe(b, [])


def _wait_limit(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return _wrap_up(b, Message.NO_CLINICIAN, [_fx(Do.LEAVE_QUEUE)])


def _queue_dropped(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if b.visit_state is not State.WAITING:
        return b, []
    return _wrap_up(b, None, [_fx(Do.LEAVE_QUEUE)])


def _end_call(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return _wrap_up(b, None, [_fx(Do.END_CALL)])


def _network_gone(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return _wrap_up(b, Message.CONNECTION_LOST, [_fx(Do.END_CALL)])


def _network_gone_waiting(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return _wrap_up(b, Message.CONNECTION_LOST, [_fx(Do.LEAVE_QUEUE)])


def _mute(muted: bool) -> Handler:
    def handler(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
        if b.muted == muted:
            return b, []
        return replace(b, muted=muted), [_fx(Do.MICROPHONE_OFF if muted else Do.MICROPHONE_ON)]

    return handler


def _camera(on: bool) -> Handler:
    def handler(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
        if b.audio_only != on or (on and not b.camera_usable):
            return b, []  # already so, or no camera to turn back on
        return replace(b, audio_only=not on), [_fx(Do.CAMERA_ON if on else Do.CAMERA_OFF)]

    return handler


def _still_here(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    return b, []  # the idle restart every touch gets is all it needs


def _idle_warning(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if b.idle_warning:
        return b, []
    return replace(b, idle_warning=True, message=Message.IDLE), []


def _idle_reset(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if not b.idle_warning:
        return b, []
    return _wipe(b, [])


def _wipe_done(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    fresh = replace(
        b, state=_idle_or_problem(b), resume=None, message=None, audio_only=False, muted=False
    )
    return fresh, [_fx(Do.OCCUPANCY_LIGHT_OFF)]


def _clear_emergency(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if not b.emergency:
        return b, []
    fx = [_fx(Do.ALARM_OFF)]
    if b.call_live:
        fx.append(_fx(Do.TELL_CLINICIAN, "emergency_cleared"))
    b = replace(b, emergency=False)
    if b.state is State.TECHNICIAN:
        return b, fx
    return _back_from_overlay(b, fx)


def _back_from_overlay(b: Booth, fx: list[Effect]) -> tuple[Booth, list[Effect]]:
    target = b.resume or State.ATTRACT
    if target in (State.ATTRACT, State.OUT_OF_SERVICE):
        target = _idle_or_problem(b)
    if target is State.PRIVACY_PAUSE and not b.door_open:
        return replace(b, state=State.IN_CALL, resume=None), [
            *fx,
            _fx(Do.RESUME_MEDIA),
            _fx(Do.TELL_CLINICIAN, "door_closed"),
        ]
    if target is State.IN_CALL and b.door_open:
        return replace(b, state=State.PRIVACY_PAUSE, resume=None), [
            *fx,
            _fx(Do.PAUSE_MEDIA),
            _fx(Do.TELL_CLINICIAN, "door_open"),
        ]
    return _enter(b, target, fx)


def _technician(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    resume = b.resume if b.state is State.EMERGENCY else b.state
    return replace(b, state=State.TECHNICIAN, resume=resume), []


def _exit_technician(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if b.emergency:
        return replace(b, state=State.EMERGENCY), []
    return _back_from_overlay(b, [])


def _emergency_call_answer(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    # A clinician answering during an emergency is let in: they may be the help.
    if b.resume is not State.WAITING:
        return b, []
    fx = [_fx(Do.ACCEPT_CALL), _fx(Do.TELL_CLINICIAN, "emergency")]
    if b.door_open:
        return replace(b, resume=State.PRIVACY_PAUSE), [*fx, _fx(Do.PAUSE_MEDIA)]
    return replace(b, resume=State.IN_CALL), fx


def _emergency_call_ended(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if b.resume in CALL_STATES:
        return replace(b, resume=State.WRAP_UP, message=None), [
            _fx(Do.END_CALL),
            _fx(Do.CLOSE_DEVICES),
        ]
    if b.resume is State.WAITING:
        return replace(b, resume=State.WRAP_UP), [_fx(Do.LEAVE_QUEUE), _fx(Do.CLOSE_DEVICES)]
    return b, []


def _emergency_wipe_done(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if b.resume is not State.WIPING:
        return b, []
    return replace(b, resume=State.ATTRACT, audio_only=False, muted=False), [
        _fx(Do.OCCUPANCY_LIGHT_OFF)
    ]


In = Intent
S = State


def _apply_bundle(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    """Only a technician (PIN given) applies a staged bundle, and only one that was verified."""
    if b.bundle is not BundleState.READY:
        return b, []
    return replace(b, bundle=BundleState.APPLYING), [_fx(Do.APPLY_BUNDLE)]


def _dismiss_bundle(b: Booth, e: Event) -> tuple[Booth, list[Effect]]:
    if b.bundle is None or b.bundle is BundleState.APPLYING:
        return b, []
    return replace(b, bundle=None), []


TABLE: dict[tuple[State, object], Handler] = {
    # state               trigger                         handler
    (S.ATTRACT, In.START): _start,
    (S.ATTRACT, In.LANGUAGE): _start,
    (S.ATTRACT, TechnicianUnlocked): _technician,
    (S.NOTICE, In.LANGUAGE): _language,
    (S.NOTICE, In.ACCEPT): _accept_notice,
    (S.DOOR_CHECK, ClinicianAnswered): _answered_at_door,
    (S.DOOR_CHECK, CodeRefused): _code_refused,
    (S.DOOR_CHECK, CallEnded): _queue_dropped,
    (S.CHECK_IN, In.APPOINTMENT): _to_device_check,
    (S.CHECK_IN, In.WALK_IN): _to_device_check,
    (S.DEVICE_CHECK, In.DEVICES_OK): _join(audio_only=False),
    (S.DEVICE_CHECK, In.AUDIO_ONLY): _join(audio_only=True),
    (S.WAITING, ClinicianAnswered): _answered,
    (S.WAITING, CodeRefused): _code_refused,
    (S.WAITING, CallEnded): _queue_dropped,
    (S.WAITING, In.CANCEL): _cancel,
    (S.WAITING, Timer.WAIT_LIMIT): _wait_limit,
    (S.WAITING, Timer.NETWORK_GRACE): _network_gone_waiting,
    (S.IN_CALL, In.END_CALL): _end_call,
    (S.IN_CALL, CallEnded): _end_call,
    (S.IN_CALL, ClinicianAnswered): lambda b, e: (b, [_fx(Do.ACCEPT_CALL)]),
    (S.IN_CALL, In.MUTE): _mute(True),
    (S.IN_CALL, In.UNMUTE): _mute(False),
    (S.IN_CALL, In.CAMERA_OFF): _camera(False),
    (S.IN_CALL, In.CAMERA_ON): _camera(True),
    (S.IN_CALL, Timer.NETWORK_GRACE): _network_gone,
    (S.PRIVACY_PAUSE, In.END_CALL): _end_call,
    (S.PRIVACY_PAUSE, CallEnded): _end_call,
    (S.PRIVACY_PAUSE, ClinicianAnswered): lambda b, e: (b, [_fx(Do.ACCEPT_CALL)]),
    (S.PRIVACY_PAUSE, Timer.NETWORK_GRACE): _network_gone,
    (S.WRAP_UP, In.DONE): _cancel,
    (S.WRAP_UP, Timer.WRAP_UP): _cancel,
    (S.WIPING, WipeDone): _wipe_done,
    (S.EMERGENCY, EmergencyCleared): _clear_emergency,
    (S.EMERGENCY, Timer.EMERGENCY_AUTO_CLEAR): _clear_emergency,
    (S.EMERGENCY, TechnicianUnlocked): _technician,
    (S.EMERGENCY, ClinicianAnswered): _emergency_call_answer,
    (S.EMERGENCY, CallEnded): _emergency_call_ended,
    (S.EMERGENCY, WipeDone): _emergency_wipe_done,
    (S.OUT_OF_SERVICE, TechnicianUnlocked): _technician,
    (S.TECHNICIAN, In.CLEAR_EMERGENCY): _clear_emergency,
    (S.TECHNICIAN, EmergencyCleared): _clear_emergency,
    (S.TECHNICIAN, In.EXIT_TECHNICIAN): _exit_technician,
    (S.TECHNICIAN, In.APPLY_BUNDLE): _apply_bundle,
    (S.TECHNICIAN, In.DISMISS_BUNDLE): _dismiss_bundle,
}
# Rows every pre-call step shares: cancel, and the idle warning and reset.
for _s in IDLE_STATES:
    TABLE[(_s, In.CANCEL)] = _cancel
    TABLE[(_s, In.STILL_HERE)] = _still_here
    TABLE[(_s, Timer.IDLE_WARNING)] = _idle_warning
    TABLE[(_s, Timer.IDLE_RESET)] = _idle_reset
TABLE[(S.PRIVACY_PAUSE, In.MUTE)] = TABLE[(S.IN_CALL, In.MUTE)]
TABLE[(S.PRIVACY_PAUSE, In.UNMUTE)] = TABLE[(S.IN_CALL, In.UNMUTE)]


def _trigger(event: Event) -> object:
    if isinstance(event, Touch):
        return event.intent
    if isinstance(event, Timeout):
        return event.timer
    return type(event)


# ---------------------------------------------------------------- rules for every state


def _on_emergency(b: Booth) -> tuple[Booth, list[Effect]]:
    if b.emergency:
        return b, []
    fx = [_fx(Do.ALARM_ON), _fx(Do.ALERT_STAFF)]
    if b.call_live:
        fx.append(_fx(Do.TELL_CLINICIAN, "emergency"))
    resume = b.visit_state
    return replace(b, state=State.EMERGENCY, resume=resume, emergency=True), fx


def _on_door(b: Booth, opened: bool) -> tuple[Booth, list[Effect]]:
    was_open = b.door_open
    b = replace(b, door_open=opened)
    if was_open == opened:
        return b, []
    overlaid = b.state in (State.EMERGENCY, State.TECHNICIAN)
    visit = b.visit_state
    if visit is State.IN_CALL and opened:
        fx = [_fx(Do.PAUSE_MEDIA), _fx(Do.TELL_CLINICIAN, "door_open")]
        return (
            replace(b, resume=State.PRIVACY_PAUSE)
            if overlaid
            else replace(b, state=State.PRIVACY_PAUSE)
        ), fx
    if visit is State.PRIVACY_PAUSE and not opened:
        fx = [_fx(Do.RESUME_MEDIA), _fx(Do.TELL_CLINICIAN, "door_closed")]
        return (
            replace(b, resume=State.IN_CALL) if overlaid else replace(b, state=State.IN_CALL)
        ), fx
    if opened and not overlaid and b.state in PRIVATE_PRE_CALL:
        return replace(b, state=State.DOOR_CHECK, resume=b.state), []
    if not opened and b.state is State.DOOR_CHECK:
        return _enter(b, b.resume or State.CHECK_IN, [])
    return b, []


def _on_network(b: Booth, up: bool) -> tuple[Booth, list[Effect]]:
    if b.network_up == up:
        return b, []
    b = replace(b, network_up=up)
    fx: list[Effect] = []
    if up and b.call_live:
        fx.append(_fx(Do.REBUILD_CALL))
        if b.message is Message.CONNECTION_LOST:
            b = replace(b, message=None)
    elif up and b.visit_state is State.WAITING:
        fx.append(_fx(Do.JOIN_QUEUE))
    elif not up and b.call_live:
        b = replace(b, message=Message.CONNECTION_LOST)
    return _availability(b, fx)


def _availability(b: Booth, fx: list[Effect]) -> tuple[Booth, list[Effect]]:
    """Between visits, follow whether a visit could start now."""
    if b.state in (State.ATTRACT, State.OUT_OF_SERVICE):
        b = replace(b, state=_idle_or_problem(b))
    return b, fx


def _on_device(b: Booth, kind: DeviceKind, present: bool) -> tuple[Booth, list[Effect]]:
    if kind is DeviceKind.STORAGE:
        # The stick itself matters only to the stage service; a refusal is forgotten with it.
        if not present and b.bundle is BundleState.REFUSED:
            return replace(b, bundle=None), []
        return b, []
    if kind is DeviceKind.HEADSET:
        return _availability(replace(b, headset=present), []) if b.headset != present else (b, [])
    missing = b.missing - {kind} if present else b.missing | {kind}
    if missing == b.missing:
        return b, []
    after = replace(b, missing=missing)
    if not present:
        after = replace(after, broken=after.broken - {kind})  # a new one is judged afresh
    after, fx = _camera_changed(b, after)
    return _availability(after, fx)


def _camera_changed(before: Booth, b: Booth) -> tuple[Booth, list[Effect]]:
    """In a call, a camera lost (unplugged, frozen) means audio only until it is back."""
    if before.camera_usable == b.camera_usable or not b.call_live:
        return b, []
    fx: list[Effect] = []
    if not b.camera_usable:
        fx.append(_fx(Do.CAMERA_OFF))
        b = replace(b, message=Message.CAMERA_LOST)
    else:
        if not b.audio_only:
            fx.append(_fx(Do.CAMERA_ON))
        if b.message is Message.CAMERA_LOST:
            b = replace(b, message=None)
    return b, fx


DELIVERING_DEVICES: Final = {"camera": DeviceKind.CAMERA, "microphone": DeviceKind.MICROPHONE}
"""Fault names of devices that can be present but deliver nothing (see hardware.health)."""


def _on_broken(b: Booth, kind: DeviceKind, failed: bool) -> tuple[Booth, list[Effect]]:
    """A camera or microphone delivering nothing: shown at the device check, never out of service.

    Such a fault can only be seen while the device is open, in a visit; taking
    the booth out of service for it would leave nothing to notice the repair.
    """
    broken = b.broken | {kind} if failed else b.broken - {kind}
    if broken == b.broken:
        return b, []
    return _camera_changed(b, replace(b, broken=broken))


def _on_update_hold(b: Booth, on: bool) -> tuple[Booth, list[Effect]]:
    """Held only between visits: a resident in the booth is never cut off for an update.

    Asked during a visit, the booth carries on (the updater waits, and asks again);
    asked while idle, new visits wait behind the out-of-service screen until the
    updater restarts the booth or lets go.
    """
    if on == b.updating:
        return b, []
    if on and (b.state not in (State.ATTRACT, State.OUT_OF_SERVICE) or b.emergency):
        return b, []
    return _availability(replace(b, updating=on), [])


def _on_fault(b: Booth, device: str, failed: bool) -> tuple[Booth, list[Effect]]:
    if device in DELIVERING_DEVICES:
        return _on_broken(b, DELIVERING_DEVICES[device], failed)
    faults = b.faults | {device} if failed else b.faults - {device}
    if faults == b.faults:
        return b, []
    b = replace(b, faults=faults)
    fx: list[Effect] = []
    if device == "door" and failed:
        # A door we cannot see might be open: treat it so, for the resident's privacy.
        b, fx = _on_door(b, True)
    return _availability(b, fx)


def _global(b: Booth, e: Event) -> tuple[Booth, list[Effect]] | None:
    """Rules that hold in every state, or None to consult the table."""
    match e:
        case EmergencyHeld():
            return _on_emergency(b)
        case EmergencyReleased():
            return b, []  # letting go never silences the alarm
        case DoorOpened():
            return _on_door(b, True)
        case DoorClosed() if "door" in b.faults:
            return b, []  # a failed door contact cannot be believed
        case DoorClosed():
            return _on_door(b, False)
        case NetworkLost():
            return _on_network(b, False)
        case NetworkRestored():
            return _on_network(b, True)
        case DeviceAdded(kind=kind):
            return _on_device(b, kind, True)
        case DeviceRemoved(kind=kind):
            return _on_device(b, kind, False)
        case HardwareFault(device=device):
            return _on_fault(b, device, True)
        case HardwareRestored(device=device):
            return _on_fault(b, device, False)
        case BundleNews(state=state):
            return (replace(b, bundle=state), []) if b.bundle is not state else (b, [])
        case UpdateHold(on=on):
            return _on_update_hold(b, on)
    return None


def step(booth: Booth, event: Event) -> tuple[Booth, list[Effect]]:
    """Apply one event. Returns the new booth and the effects to carry out, in order."""
    handled = _global(booth, event)
    if handled is None:
        handler = TABLE.get((booth.state, _trigger(event)))
        idle_touch = booth.state in IDLE_STATES and isinstance(event, Touch)
        if handler is None and not idle_touch:
            return booth, []
        handled = handler(booth, event) if handler else (booth, [])
        if idle_touch and handled[0].state in IDLE_STATES:
            b, fx = _restart_idle(handled[0])
            if b.message is Message.IDLE:
                b = replace(b, message=None)
            handled = (b, [*handled[1], *fx])
    new, effects = handled
    if new == booth and not effects:
        return booth, []
    return _settle(booth, new, effects)
