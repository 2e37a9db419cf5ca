"""The visit state machine: every (state, event) pair, whole visits, and invariants.

The full table lives in ``state_table.txt`` beside this file, one line per
pair, reviewed by hand. A change to the machine that changes any pair fails
here until the table is regenerated (``python -m tests.kiosk.test_session``)
and the diff read.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hardware.events import (
    DeviceAdded,
    DeviceKind,
    DeviceRemoved,
    DoorClosed,
    DoorOpened,
    EmergencyHeld,
    EmergencyReleased,
    HardwareFault,
    HardwareRestored,
)
from kiosk.session import (
    CALL_STATES,
    PRIVATE_PRE_CALL,
    Booth,
    BundleNews,
    BundleState,
    CallEnded,
    ClinicianAnswered,
    CodeRefused,
    Do,
    Effect,
    EmergencyCleared,
    Event,
    Intent,
    NetworkLost,
    NetworkRestored,
    State,
    TechnicianUnlocked,
    Timeout,
    Timer,
    Touch,
    UpdateHold,
    WipeDone,
    _timers_of,
    initial,
    step,
)

TABLE_FILE = Path(__file__).with_name("state_table.txt")

# One booth per state, as the booth really is when it gets there.
REPRESENTATIVES: dict[str, Booth] = {
    "attract": Booth(),
    "notice": Booth(state=State.NOTICE),
    "notice+idle_warning": Booth(state=State.NOTICE, idle_warning=True),
    "door_check": Booth(state=State.DOOR_CHECK, resume=State.CHECK_IN, door_open=True),
    "door_check(waiting)": Booth(state=State.DOOR_CHECK, resume=State.WAITING, door_open=True),
    "check_in": Booth(state=State.CHECK_IN),
    "device_check": Booth(state=State.DEVICE_CHECK),
    "waiting": Booth(state=State.WAITING),
    "in_call": Booth(state=State.IN_CALL),
    "privacy_pause": Booth(state=State.PRIVACY_PAUSE, door_open=True),
    "wrap_up": Booth(state=State.WRAP_UP),
    "wiping": Booth(state=State.WIPING),
    "emergency(attract)": Booth(state=State.EMERGENCY, resume=State.ATTRACT, emergency=True),
    "emergency(waiting)": Booth(state=State.EMERGENCY, resume=State.WAITING, emergency=True),
    "emergency(in_call)": Booth(state=State.EMERGENCY, resume=State.IN_CALL, emergency=True),
    "out_of_service": Booth(state=State.OUT_OF_SERVICE, network_up=False),
    "technician": Booth(state=State.TECHNICIAN, resume=State.ATTRACT),
    "technician(emergency)": Booth(state=State.TECHNICIAN, resume=State.ATTRACT, emergency=True),
    "technician+bundle": Booth(
        state=State.TECHNICIAN, resume=State.ATTRACT, bundle=BundleState.READY
    ),
}

EVENTS: list[Event] = [
    *(Touch(i, "es" if i is Intent.LANGUAGE else "") for i in Intent),
    *(Timeout(t) for t in Timer),
    DoorOpened(),
    DoorClosed(),
    EmergencyHeld(),
    EmergencyReleased(),
    EmergencyCleared(),
    NetworkLost(),
    NetworkRestored(),
    ClinicianAnswered(),
    CallEnded(),
    CodeRefused(),
    WipeDone(),
    TechnicianUnlocked(),
    HardwareFault("door", "cut"),
    HardwareFault("emergency_button", "short"),
    HardwareRestored("door"),
    BundleNews(BundleState.READY),
    UpdateHold(True),
    HardwareFault("camera", "frozen"),
    HardwareRestored("camera"),
    HardwareFault("microphone", "silent"),
    DeviceRemoved(DeviceKind.CAMERA),
    DeviceAdded(DeviceKind.CAMERA),
    DeviceRemoved(DeviceKind.MICROPHONE),
    DeviceAdded(DeviceKind.HEADSET),
    DeviceAdded(DeviceKind.STORAGE),
]


def _name(event: Event) -> str:
    if isinstance(event, Touch):
        return f"touch {event.intent.value}"
    if isinstance(event, Timeout):
        return f"timeout {event.timer.value}"
    fields = ",".join(str(v) for v in vars(event).values() if v is not None)
    return type(event).__name__ + (f"({fields})" if fields else "")


def _fx(effects: list[Effect]) -> str:
    return " ".join(f"{e.do.value}:{e.detail}" if e.detail else e.do.value for e in effects)


def render_table() -> str:
    lines = []
    for rep, booth in REPRESENTATIVES.items():
        for event in EVENTS:
            after, effects = step(booth, event)
            if after == booth and not effects:
                outcome = "-"
            else:
                target = after.state.value
                if after.resume and after.state in (
                    State.EMERGENCY,
                    State.TECHNICIAN,
                    State.DOOR_CHECK,
                ):
                    target += f"({after.resume.value})"
                outcome = f"{target} [{_fx(effects)}]"
            lines.append(f"{rep:<22} {_name(event):<34} -> {outcome}")
    return "\n".join(lines) + "\n"


def test_every_state_and_event_pair_matches_the_reviewed_table() -> None:
    expected = TABLE_FILE.read_text()
    actual = render_table()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), actual.splitlines(True), "state_table.txt", "machine"
            )
        )
        raise AssertionError("state machine differs from the reviewed table:\n" + diff)


def test_table_covers_every_state_and_every_intent_and_timer() -> None:
    covered = {b.state for b in REPRESENTATIVES.values()}
    assert covered == set(State)
    names = {_name(e) for e in EVENTS}
    assert {f"touch {i.value}" for i in Intent} <= names
    assert {f"timeout {t.value}" for t in Timer} <= names


def _run(events: list[Event], booth: Booth | None = None) -> tuple[Booth, list[Effect]]:
    b = booth or initial()
    all_fx: list[Effect] = []
    for e in events:
        b, fx = step(b, e)
        all_fx += fx
    return b, all_fx


def _does(effects: list[Effect]) -> list[str]:
    return [e.do.value for e in effects if e.do not in (Do.START_TIMER, Do.CANCEL_TIMER)]


WALK_IN_TO_CALL: list[Event] = [
    Touch(Intent.START),
    Touch(Intent.ACCEPT),
    Touch(Intent.WALK_IN),
    Touch(Intent.DEVICES_OK),
    ClinicianAnswered(),
]


def test_a_whole_visit_from_attract_back_to_attract() -> None:
    b, fx = _run([*WALK_IN_TO_CALL, Touch(Intent.END_CALL), Timeout(Timer.WRAP_UP), WipeDone()])
    assert b.state is State.ATTRACT
    assert _does(fx) == [
        "begin_visit",
        "occupancy_light_on",
        "open_devices",
        "join_queue",
        "accept_call",
        "end_call",
        "close_devices",
        "wipe",
        "occupancy_light_off",
    ]


def test_language_chosen_on_the_attract_screen_carries_through_the_visit() -> None:
    b, _ = _run([Touch(Intent.LANGUAGE, "es"), Touch(Intent.ACCEPT)])
    assert (b.state, b.language) == (State.CHECK_IN, "es")


def test_no_visit_starts_with_the_door_open() -> None:
    b, _ = _run([DoorOpened(), Touch(Intent.START), Touch(Intent.ACCEPT)])
    assert b.state is State.DOOR_CHECK
    b, _ = step(b, DoorClosed())
    assert b.state is State.CHECK_IN


def test_door_opening_in_a_call_pauses_media_and_tells_the_clinician_then_resumes() -> None:
    b, _ = _run(WALK_IN_TO_CALL)
    b, fx = step(b, DoorOpened())
    assert b.state is State.PRIVACY_PAUSE
    assert _does(fx) == ["pause_media", "tell_clinician"] and fx[1].detail == "door_open"
    b, fx = step(b, DoorClosed())
    assert b.state is State.IN_CALL
    assert _does(fx) == ["resume_media", "tell_clinician"] and fx[1].detail == "door_closed"


def test_clinician_answering_while_the_door_is_open_starts_the_call_paused() -> None:
    b, _ = _run([*WALK_IN_TO_CALL[:-1], DoorOpened()])
    assert (b.state, b.resume) == (State.DOOR_CHECK, State.WAITING)
    b, fx = step(b, ClinicianAnswered())
    assert b.state is State.PRIVACY_PAUSE
    assert _does(fx) == ["accept_call", "pause_media", "tell_clinician"]


def test_emergency_from_every_state_raises_the_alarm_once_and_keeps_the_call() -> None:
    for rep, booth in REPRESENTATIVES.items():
        if booth.emergency:
            b, fx = step(booth, EmergencyHeld())
            assert "alarm_on" not in _does(fx), rep
            continue
        b, fx = step(booth, EmergencyHeld())
        assert b.state is State.EMERGENCY, rep
        assert _does(fx)[:2] == ["alarm_on", "alert_staff"], rep
        assert "end_call" not in _does(fx), rep
        assert ("tell_clinician" in _does(fx)) == booth.call_live, rep
        again, fx2 = step(b, EmergencyHeld())
        assert _does(fx2) == [] and again.state is State.EMERGENCY, rep
        released, fx3 = step(b, EmergencyReleased())
        assert released.state is State.EMERGENCY and _does(fx3) == [], rep


def test_staff_clearing_an_emergency_returns_to_the_call() -> None:
    b, _ = _run([*WALK_IN_TO_CALL, EmergencyHeld(), EmergencyReleased()])
    b, fx = step(b, EmergencyCleared())
    assert b.state is State.IN_CALL and not b.emergency
    assert _does(fx) == ["alarm_off", "tell_clinician"]


def test_technician_clears_an_emergency_then_leaves() -> None:
    b, _ = _run([EmergencyHeld(), TechnicianUnlocked()])
    assert b.state is State.TECHNICIAN
    b, fx = step(b, Touch(Intent.EXIT_TECHNICIAN))
    assert b.state is State.EMERGENCY, "leaving technician mode must not silence an emergency"
    b, _ = step(b, TechnicianUnlocked())
    b, fx = step(b, Touch(Intent.CLEAR_EMERGENCY))
    assert _does(fx) == ["alarm_off"]
    b, _ = step(b, Touch(Intent.EXIT_TECHNICIAN))
    assert b.state is State.ATTRACT


def test_residents_cannot_dismiss_the_emergency_by_touch() -> None:
    b, _ = _run([EmergencyHeld()])
    for intent in Intent:
        after, fx = step(b, Touch(intent))
        assert after.state is State.EMERGENCY and _does(fx) == [], intent


def test_idle_outside_a_call_warns_then_wipes() -> None:
    b, fx = _run([Touch(Intent.START)])
    assert Effect(Do.START_TIMER, "idle_warning") in fx
    b, fx = step(b, Timeout(Timer.IDLE_WARNING))
    assert b.idle_warning and Effect(Do.START_TIMER, "idle_reset") in fx
    still, fx = step(b, Touch(Intent.STILL_HERE))
    assert not still.idle_warning and Effect(Do.START_TIMER, "idle_warning") in fx
    b, fx = step(b, Timeout(Timer.IDLE_RESET))
    assert b.state is State.WIPING and "wipe" in _does(fx)


def test_network_loss_in_a_call_keeps_the_call_then_ends_it_after_the_grace_time() -> None:
    b, _ = _run(WALK_IN_TO_CALL)
    b, fx = step(b, NetworkLost())
    assert b.state is State.IN_CALL and Effect(Do.START_TIMER, "network_grace") in fx
    back, fx = step(b, NetworkRestored())
    assert back.state is State.IN_CALL and _does(fx) == ["rebuild_call"]
    gone, fx = step(b, Timeout(Timer.NETWORK_GRACE))
    assert gone.state is State.WRAP_UP and "end_call" in _does(fx)


def test_wrong_appointment_code_returns_to_check_in_with_a_message() -> None:
    b, _ = _run([Touch(Intent.START), Touch(Intent.ACCEPT), Touch(Intent.APPOINTMENT, "999")])
    b, _ = step(b, Touch(Intent.DEVICES_OK))
    b, fx = step(b, CodeRefused())
    assert b.state is State.CHECK_IN and b.message is not None and _does(fx) == ["leave_queue"]


def test_camera_unplugged_in_a_call_goes_audio_only_and_comes_back() -> None:
    b, _ = _run(WALK_IN_TO_CALL)
    b, fx = step(b, DeviceRemoved(DeviceKind.CAMERA))
    assert b.state is State.IN_CALL and _does(fx) == ["camera_off"]
    b, fx = step(b, DeviceAdded(DeviceKind.CAMERA))
    assert _does(fx) == ["camera_on"]


def test_between_visits_a_fault_or_no_network_puts_the_booth_out_of_service() -> None:
    b, _ = step(initial(), NetworkLost())
    assert b.state is State.OUT_OF_SERVICE
    b, _ = step(b, NetworkRestored())
    assert b.state is State.ATTRACT
    b, _ = step(b, HardwareFault("emergency_button", "cut"))
    assert b.state is State.OUT_OF_SERVICE
    b, _ = step(b, HardwareRestored("emergency_button"))
    assert b.state is State.ATTRACT


def test_a_fault_during_a_visit_waits_for_the_visit_to_end() -> None:
    b, _ = _run([*WALK_IN_TO_CALL, HardwareFault("emergency_button", "cut")])
    assert b.state is State.IN_CALL
    b, _ = _run([Touch(Intent.END_CALL), Touch(Intent.DONE), WipeDone()], b)
    assert b.state is State.OUT_OF_SERVICE


def test_a_cut_door_wire_counts_as_an_open_door() -> None:
    b, _ = _run(WALK_IN_TO_CALL)
    b, fx = step(b, HardwareFault("door", "cut"))
    assert b.state is State.PRIVACY_PAUSE and "pause_media" in _does(fx)
    b, _ = step(b, DoorClosed())
    assert b.state is State.PRIVACY_PAUSE, "a failed door contact must not be believed"


# ---------------------------------------------------------------- invariants

_PATH = [Touch(Intent.START), Touch(Intent.ACCEPT), Touch(Intent.WALK_IN), Touch(Intent.DEVICES_OK)]
_ALL_EVENTS = st.sampled_from(
    [e for e in EVENTS if not isinstance(e, Timeout)]
    + [Touch(Intent.APPOINTMENT, "1234"), HardwareRestored("emergency_button")]
    + _PATH * 3
    + [ClinicianAnswered(), DoorOpened(), DoorClosed()] * 2
)


def check_invariants(script: list[tuple[Event, int]]) -> None:
    """Whatever happens: timers match the state, the alarm matches the emergency,
    the occupancy light matches the visit, and no private step runs with the door open."""
    b = initial()
    armed: set[Timer] = set()
    alarm = light = False
    for scripted, pick in script:
        event = scripted
        # Deliver a running timer's time-out now and then, as real time would.
        if armed and pick == 0:
            timer = sorted(armed)[0]
            armed.discard(timer)
            event = Timeout(timer)
        b, fx = step(b, event)
        for e in fx:
            if e.do is Do.START_TIMER:
                armed.add(Timer(e.detail))
            elif e.do is Do.CANCEL_TIMER:
                armed.discard(Timer(e.detail))
            elif e.do in (Do.ALARM_ON, Do.ALARM_OFF):
                assert alarm != (e.do is Do.ALARM_ON), "alarm switched to the state it was in"
                alarm = e.do is Do.ALARM_ON
            elif e.do in (Do.OCCUPANCY_LIGHT_ON, Do.OCCUPANCY_LIGHT_OFF):
                light = e.do is Do.OCCUPANCY_LIGHT_ON
        assert armed == _timers_of(b), (event, b)
        assert alarm == b.emergency
        assert light == b.in_visit
        overlaid = b.state in (State.EMERGENCY, State.TECHNICIAN)
        if b.door_open and not overlaid:
            assert b.state not in PRIVATE_PRE_CALL | {State.IN_CALL}, b
        if b.door_open and b.call_live:
            assert b.visit_state is State.PRIVACY_PAUSE, b
        if b.visit_state in CALL_STATES and "door" in b.faults:
            assert b.visit_state is State.PRIVACY_PAUSE


@settings(max_examples=800, deadline=None)
@example([(e, 1) for e in [*WALK_IN_TO_CALL, DoorOpened(), EmergencyHeld(), DoorClosed()]])
@given(st.lists(st.tuples(_ALL_EVENTS, st.integers(0, 5)), max_size=60))
def test_invariants_hold_over_any_sequence(script: list[tuple[Event, int]]) -> None:
    check_invariants(script)


def test_invariant_check_catches_a_machine_that_forgets_the_door() -> None:
    """Twin: with the door rule removed the invariant test above must fail."""
    from kiosk import session

    original = session._on_door

    def forgetful(b: Booth, opened: bool) -> tuple[Booth, list[Effect]]:
        return replace(b, door_open=opened), []

    session._on_door = forgetful
    try:
        b, _ = _run(WALK_IN_TO_CALL)
        b, _ = step(b, DoorOpened())
        assert b.door_open and b.state is State.IN_CALL  # the protection is really off
        try:
            check_invariants([(e, 1) for e in [*WALK_IN_TO_CALL, DoorOpened()]])
        except AssertionError:
            pass
        else:
            raise AssertionError("invariants did not notice media flowing with the door open")
        try:
            test_invariants_hold_over_any_sequence()
        except AssertionError:
            return
        raise AssertionError("random sequences did not find media flowing with the door open")
    finally:
        session._on_door = original


def test_resident_values_never_appear_in_a_repr() -> None:
    touch = Touch(Intent.APPOINTMENT, "APPT-CANARY-42")
    assert "CANARY" not in repr(touch)
    b, fx = step(Booth(state=State.CHECK_IN), touch)
    assert "CANARY" not in repr(b) + repr(fx)


if __name__ == "__main__":
    TABLE_FILE.write_text(render_table())
    print(f"wrote {TABLE_FILE}")
