"""Every word a resident can see or hear, in English, as gettext message ids.

Residents may be here for the first time, anxious, reading little or seeing
poorly, some in crisis; so the words are short, plain (about sixth grade),
warm and never blame ("health professional", not "clinician"). Keeping them
all here, rather than in screens, lets them be read, reviewed and translated
as one text.

Each screen of :class:`kiosk.session.State` has a frozen :class:`ScreenText`
(a subclass with its own buttons where it has any) in :data:`SCREENS`. Every
``str`` in these structures is an English message id, marked with :func:`N_`
so ``xgettext --keyword=N_`` finds them too; :func:`NP_` marks a
:class:`Plural`. Translate at display time (:mod:`kiosk.i18n`), then fill
placeholders with ``str.format``. The placeholders are :data:`PLACEHOLDERS`:

``{emergency_number}``, ``{crisis_number}``
    from ``[emergency]`` in the booth configuration, never written into a
    translation (a site may use other numbers). For speech pass them through
    :func:`kiosk.i18n.spoken_digits`: espeak reads "911" as "nine hundred eleven".
``{staff}``
    who is alerted, from ``emergency.staff`` in the visit's language.
``{minutes}``, ``{seconds}``
    counts, always with a :class:`Plural`.

``spoken`` is what the booth says when the screen opens (read-aloud mode);
an empty string means say nothing. :data:`LANGUAGE_NAMES` are not message
ids: a language is always named in its own words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from kiosk.session import Message, State

__all__ = [
    "ATTRACT",
    "CHECK_IN",
    "COMMON",
    "DEVICE_CHECK",
    "DOOR_CHECK",
    "EMERGENCY",
    "IDLE_WARNING",
    "IN_CALL",
    "KEYPAD",
    "LANGUAGE_NAMES",
    "MESSAGES",
    "NOTICE",
    "NP_",
    "N_",
    "OUT_OF_SERVICE",
    "PLACEHOLDERS",
    "PRIVACY_PAUSE",
    "ROOTS",
    "SAFETY",
    "SCREENS",
    "TECHNICIAN",
    "TOGGLES",
    "WAITING",
    "WIPING",
    "WRAP_UP",
    "Plural",
    "ScreenText",
    "message_text",
]


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark ``message`` for extraction; translation happens later, on display."""
    return message


@dataclass(frozen=True)
class Plural:
    """A message whose wording depends on a count (``1 minute``, ``2 minutes``)."""

    singular: str
    plural: str


def NP_(singular: str, plural: str) -> Plural:  # noqa: N802 - gettext marker name
    """Mark a singular/plural pair for extraction (``xgettext --keyword=NP_:1,2``)."""
    return Plural(singular, plural)


PLACEHOLDERS: Final = frozenset(
    # summary and reason: a technician's USB bundle, in the stage service's words.
    {"emergency_number", "crisis_number", "staff", "minutes", "seconds", "summary", "reason"}
)


# ---------------------------------------------------------------- structures


@dataclass(frozen=True, kw_only=True)
class ScreenText:
    """What every screen has: a title, lines of text, and what is said on arrival."""

    title: str
    body: tuple[str, ...] = ()
    spoken: str = ""


@dataclass(frozen=True, kw_only=True)
class SafetyText:
    """The 911/988 lines, the same words on every screen that shows them."""

    emergency: str
    crisis: str
    crisis_line: str

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.emergency, self.crisis, self.crisis_line)


@dataclass(frozen=True, kw_only=True)
class CommonText:
    """Labels several screens share."""

    cancel: str
    back: str
    yes: str
    no: str
    choose_language: str


@dataclass(frozen=True, kw_only=True)
class KeypadText:
    """The number pad for an appointment code or a technician PIN."""

    delete: str
    clear: str
    submit: str


@dataclass(frozen=True, kw_only=True)
class MessageText:
    """Why the booth is where it is (:class:`kiosk.session.Message`), shown as a banner."""

    title: str
    body: tuple[str, ...] = ()
    spoken: str = ""


@dataclass(frozen=True, kw_only=True)
class AttractText(ScreenText):
    start: str
    choose_language: str
    bundle_found: str


@dataclass(frozen=True, kw_only=True)
class NoticeText(ScreenText):
    accept: str
    cancel: str


@dataclass(frozen=True, kw_only=True)
class DoorCheckText(ScreenText):
    cancel: str


@dataclass(frozen=True, kw_only=True)
class CheckInText(ScreenText):
    """Two choices first; the keypad view appears after ``appointment``."""

    appointment: str
    walk_in: str
    code_prompt: str
    code_spoken: str
    keypad: KeypadText
    back: str
    cancel: str


@dataclass(frozen=True, kw_only=True)
class DeviceCheckText(ScreenText):
    """``body`` holds the three questions, in order: camera, microphone, speaker.

    ``problem_*`` is the panel "Something is wrong" opens.
    """

    play_sound: str
    test_sound: str
    devices_ok: str
    problem: str
    problem_title: str
    problem_body: tuple[str, ...]
    problem_spoken: str
    audio_only: str
    try_again: str
    cancel: str
    camera_fault: str
    camera_fault_spoken: str
    microphone_fault: str
    microphone_fault_spoken: str


@dataclass(frozen=True, kw_only=True)
class OutOfServiceText(ScreenText):
    """``updating`` replaces "try again later" while a new release is switched in."""

    updating: str


@dataclass(frozen=True, kw_only=True)
class WaitingText(ScreenText):
    waited: Plural
    cancel: str


@dataclass(frozen=True, kw_only=True)
class InCallText(ScreenText):
    """Call controls; ``*_notice`` lines explain a state the resident chose or got."""

    mute: str
    unmute: str
    muted_notice: str
    camera_off: str
    camera_on: str
    camera_off_notice: str
    audio_only_notice: str
    clinician_muted: str
    clinician_camera_off: str
    volume: str
    louder: str
    quieter: str
    end_call: str
    end_confirm: str
    end_yes: str
    end_no: str


@dataclass(frozen=True, kw_only=True)
class WrapUpText(ScreenText):
    """``ended_by`` replaces ``body`` when a :class:`Message` ended the visit."""

    done: str
    ended_by: Mapping[Message, MessageText]


@dataclass(frozen=True, kw_only=True)
class EmergencyText(ScreenText):
    """``call_continues`` is shown when a call is still going on under the emergency."""

    call_continues: str


@dataclass(frozen=True, kw_only=True)
class TechnicianText(ScreenText):
    enter_pin: str
    keypad: KeypadText
    unlock: str
    clear_emergency: str
    exit: str
    wrong_pin: str
    locked: Plural
    bundle_ready: str
    apply_bundle: str
    bundle_refused: str
    bundle_applying: str
    bundle_failed: str
    dismiss: str


@dataclass(frozen=True, kw_only=True)
class IdleWarningText:
    """Shown over a pre-call screen when no one has touched it for a while."""

    title: str
    countdown: Plural
    still_here: str
    spoken: str


@dataclass(frozen=True, kw_only=True)
class TogglesText:
    """Accessibility switches, on every screen."""

    larger_text: str
    high_contrast: str
    read_aloud: str


# ---------------------------------------------------------------- shared words

SAFETY: Final = SafetyText(
    emergency=N_("For an emergency, call {emergency_number}."),
    crisis=N_("For a mental-health crisis, call or text {crisis_number}."),
    crisis_line=N_("{crisis_number} Suicide and Crisis Lifeline"),
)

COMMON: Final = CommonText(
    cancel=N_("Cancel"),
    back=N_("Back"),
    yes=N_("Yes"),
    no=N_("No"),
    choose_language=N_("Choose your language"),
)

KEYPAD: Final = KeypadText(delete=N_("Delete"), clear=N_("Clear"), submit=N_("Continue"))

TOGGLES: Final = TogglesText(
    larger_text=N_("Larger text"),
    high_contrast=N_("High contrast"),
    read_aloud=N_("Read aloud"),
)

LANGUAGE_NAMES: Final[Mapping[str, str]] = MappingProxyType({"en": "English", "es": "Español"})
"""Each language in its own words; never translated."""


# ---------------------------------------------------------------- screens

ATTRACT: Final = AttractText(
    title=N_("Free, private video visit with a health professional"),
    body=(N_("You do not need an appointment."),),
    start=N_("Touch anywhere to start"),
    choose_language=COMMON.choose_language,
    bundle_found=N_("A technician's USB stick is in the booth."),
    spoken=N_(
        "Welcome. You can have a free, private video visit with a health professional. "
        "Touch the screen to start."
    ),
)

NOTICE: Final = NoticeText(
    title=N_("Before you start"),
    body=(
        N_("Your visit is private. Nothing is recorded."),
        N_("Please close the door."),
        N_("This booth is not for emergencies."),
        *SAFETY.lines,
    ),
    accept=N_("I understand"),
    cancel=COMMON.cancel,
    spoken=N_(
        "Your visit is private. Nothing is recorded. Please close the door. "
        "This booth is not for emergencies. For an emergency, call {emergency_number}. "
        "For a mental-health crisis, call or text {crisis_number}. "
        "When you are ready, touch I understand."
    ),
)

DOOR_CHECK: Final = DoorCheckText(
    title=N_("Please close the door"),
    body=(
        N_("Close the door so your visit stays private."),
        N_("We will go on when the door is closed."),
    ),
    cancel=COMMON.cancel,
    spoken=N_("Please close the door so your visit stays private."),
)

CHECK_IN: Final = CheckInText(
    title=N_("Do you have an appointment code?"),
    body=(N_("No code? That is OK. You can see the next available health professional."),),
    appointment=N_("I have an appointment code"),
    walk_in=N_("See the next available health professional"),
    code_prompt=N_("Type your appointment code"),
    code_spoken=N_("Type your code, then touch Continue."),
    keypad=KEYPAD,
    back=COMMON.back,
    cancel=COMMON.cancel,
    spoken=N_(
        "Do you have an appointment code? If not, that is OK. "
        "You can see the next available health professional."
    ),
)

DEVICE_CHECK: Final = DeviceCheckText(
    title=N_("Let's check your camera and sound"),
    body=(
        N_("Can you see yourself on the screen?"),
        N_("Say something. Does the bar move when you speak?"),
        N_("Touch Play a test sound. Can you hear it?"),
    ),
    play_sound=N_("Play a test sound"),
    test_sound=N_("This is a test sound. If you can hear me, your sound is working."),
    devices_ok=N_("I can see and hear"),
    problem=N_("Something is wrong"),
    problem_title=N_("That is OK. You can still have your visit."),
    problem_body=(
        N_("With audio only, the health professional can hear you but cannot see you."),
        N_("If you cannot hear, ask {staff} for help."),
    ),
    problem_spoken=N_(
        "That is OK. You can continue with audio only. If you cannot hear, ask {staff} for help."
    ),
    audio_only=N_("Continue with audio only"),
    try_again=N_("Try again"),
    cancel=COMMON.cancel,
    camera_fault=N_("The camera is not working. Your visit can be sound only."),
    camera_fault_spoken=N_(
        "The camera is not working. You can still have your visit with sound only. "
        "Touch Continue with audio only."
    ),
    microphone_fault=N_("The microphone hears nothing. Ask {staff}, or plug in a headset."),
    microphone_fault_spoken=N_(
        "The microphone is not picking up any sound. Please ask {staff} for help, "
        "or plug in a headset."
    ),
    spoken=N_(
        "Let's check your camera and sound. Can you see yourself on the screen? "
        "Say something and watch the bar move. Then touch I can see and hear."
    ),
)

WAITING: Final = WaitingText(
    title=N_("Waiting for a health professional"),
    body=(
        N_("You are in line. Someone will be with you soon."),
        N_("Please stay in the booth with the door closed."),
    ),
    waited=NP_("You have waited {minutes} minute.", "You have waited {minutes} minutes."),
    cancel=COMMON.cancel,
    spoken=N_(
        "You are in line. A health professional will be with you soon. Please stay in the booth."
    ),
)

IN_CALL: Final = InCallText(
    title=N_("Your visit"),
    mute=N_("Mute"),
    unmute=N_("Unmute"),
    muted_notice=N_("You are muted. The health professional cannot hear you."),
    camera_off=N_("Turn camera off"),
    camera_on=N_("Turn camera on"),
    camera_off_notice=N_("Your camera is off. The health professional cannot see you."),
    audio_only_notice=N_("Audio only: the health professional can hear you but cannot see you."),
    clinician_muted=N_("The health professional has turned their microphone off."),
    clinician_camera_off=N_("The health professional has turned their camera off."),
    volume=N_("Volume"),
    louder=N_("Louder"),
    quieter=N_("Quieter"),
    end_call=N_("End visit"),
    end_confirm=N_("End the visit?"),
    end_yes=N_("Yes, end it"),
    end_no=N_("No, keep going"),
    spoken=N_("You are connected. You can talk now."),
)

PRIVACY_PAUSE: Final = ScreenText(
    title=N_("The door is open"),
    body=(
        N_("Your camera and microphone are paused."),
        N_("Close the door to go on with your visit."),
    ),
    spoken=N_(
        "The door is open. Your camera and microphone are paused. "
        "Close the door to go on with your visit."
    ),
)

_CONNECTION_LOST_TITLE = N_("The connection was lost")
_NO_CLINICIAN = MessageText(
    title=N_("No health professional is free right now"),
    body=(N_("We are sorry. Please come back later."),),
    spoken=N_("We are sorry. No health professional is free right now. Please come back later."),
)

WRAP_UP: Final = WrapUpText(
    title=N_("Thank you"),
    body=(N_("Your visit is over."), N_("Please take your things with you.")),
    done=N_("Done"),
    ended_by=MappingProxyType(
        {
            Message.NO_CLINICIAN: _NO_CLINICIAN,
            Message.CONNECTION_LOST: MessageText(
                title=_CONNECTION_LOST_TITLE,
                body=(N_("We are sorry, your visit had to end. Please try again later."),),
                spoken=N_(
                    "The connection was lost. We are sorry, your visit had to end. "
                    "Please try again later."
                ),
            ),
        }
    ),
    spoken=N_("Thank you. Your visit is over. Please take your things with you."),
)

WIPING: Final = ScreenText(
    title=N_("Clearing the booth for the next person"),
    body=(N_("Nothing from your visit is kept."),),
    spoken=N_("Goodbye. Take care."),
)

EMERGENCY: Final = EmergencyText(
    title=N_("Help is coming"),
    body=(N_("We called for help: {staff} are on their way."), *SAFETY.lines),
    call_continues=N_("Your video visit is still on. You can keep talking."),
    spoken=N_(
        "Help is coming. We called for help: {staff} are on their way. "
        "For an emergency, call {emergency_number}. "
        "For a mental-health crisis, call or text {crisis_number}."
    ),
)

OUT_OF_SERVICE: Final = OutOfServiceText(
    updating=N_("The booth is updating. Please try again in a few minutes."),
    title=N_("Sorry, this booth cannot make visits right now"),
    body=(N_("Please try again later."), N_("If you need help, ask {staff}."), *SAFETY.lines),
    spoken=N_(
        "Sorry, this booth cannot make visits right now. If you need help, ask {staff}. "
        "For an emergency, call {emergency_number}. "
        "For a mental-health crisis, call or text {crisis_number}."
    ),
)

TECHNICIAN: Final = TechnicianText(
    title=N_("Technician mode"),
    enter_pin=N_("Enter PIN"),
    keypad=KEYPAD,
    unlock=N_("Unlock"),
    clear_emergency=N_("Clear emergency"),
    exit=N_("Exit"),
    wrong_pin=N_("Wrong PIN. Try again."),
    locked=NP_(
        "Too many tries. Locked for {minutes} minute.",
        "Too many tries. Locked for {minutes} minutes.",
    ),
    bundle_ready=N_("A signed technician bundle is on the USB stick: {summary}"),
    apply_bundle=N_("Apply the bundle"),
    bundle_refused=N_("The bundle on the USB stick was refused: {reason}"),
    bundle_applying=N_("Applying the bundle. The booth will restart by itself."),
    bundle_failed=N_("The bundle could not be applied: {reason}"),
    dismiss=N_("Dismiss"),
)

SCREENS: Final[Mapping[State, ScreenText]] = MappingProxyType(
    {
        State.ATTRACT: ATTRACT,
        State.NOTICE: NOTICE,
        State.DOOR_CHECK: DOOR_CHECK,
        State.CHECK_IN: CHECK_IN,
        State.DEVICE_CHECK: DEVICE_CHECK,
        State.WAITING: WAITING,
        State.IN_CALL: IN_CALL,
        State.PRIVACY_PAUSE: PRIVACY_PAUSE,
        State.WRAP_UP: WRAP_UP,
        State.WIPING: WIPING,
        State.EMERGENCY: EMERGENCY,
        State.OUT_OF_SERVICE: OUT_OF_SERVICE,
        State.TECHNICIAN: TECHNICIAN,
    }
)
"""One text per state, so a screen is never without words."""


# ---------------------------------------------------------------- messages and overlays

_IDLE_TITLE = N_("Are you still there?")

MESSAGES: Final[Mapping[Message, MessageText]] = MappingProxyType(
    {
        Message.CODE_NOT_FOUND: MessageText(
            title=N_("We could not find that code"),
            body=(
                N_(
                    "Please check your code and try again. "
                    "Or see the next available health professional."
                ),
            ),
            spoken=N_(
                "We could not find that code. Please check your code and try again. "
                "Or see the next available health professional."
            ),
        ),
        Message.NO_CLINICIAN: _NO_CLINICIAN,
        Message.CONNECTION_LOST: MessageText(
            title=_CONNECTION_LOST_TITLE,
            body=(N_("We are trying to connect again. Please wait."),),
            spoken=N_("The connection was lost. We are trying to connect again. Please wait."),
        ),
        Message.CAMERA_LOST: MessageText(
            title=N_("The camera stopped working"),
            body=(N_("The health professional can still hear you."),),
        ),
        Message.IDLE: MessageText(
            title=_IDLE_TITLE,
            body=(N_("Touch the screen to keep going."),),
        ),
    }
)
"""While it is happening; :data:`WRAP_UP` has the words for a visit a message ended."""

IDLE_WARNING: Final = IdleWarningText(
    title=_IDLE_TITLE,
    countdown=NP_(
        "The visit will end in {seconds} second.",
        "The visit will end in {seconds} seconds.",
    ),
    still_here=N_("I'm still here"),
    spoken=N_("Are you still there? Touch I'm still here to keep going."),
)


def message_text(state: State, message: Message) -> MessageText:
    """The words for ``message`` on the screen of ``state`` (after the visit, or during it)."""
    if state is State.WRAP_UP and message in WRAP_UP.ended_by:
        return WRAP_UP.ended_by[message]
    return MESSAGES[message]


ROOTS: Final[Mapping[str, object]] = MappingProxyType(
    {
        "screens": SCREENS,
        "messages": MESSAGES,
        "idle_warning": IDLE_WARNING,
        "safety": SAFETY,
        "common": COMMON,
        "keypad": KEYPAD,
        "toggles": TOGGLES,
    }
)
"""Everything translatable, for :func:`kiosk.i18n.extract` to walk."""
