"""BoothGpio on real gpiozero devices over MockFactory pins (E1, E2, E3).

Each test gets a fresh factory from ``make_mock_factory`` (a ``MockFactory``
whose inputs start at rest) and its own event loop; the loop is run for a
few tens of milliseconds of real time so that ``call_at`` timers fire.
Mock pins call back synchronously, so edges are timestamped as they are
driven. Every fault check has a twin with the protection removed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from hardware.events import (
    DoorClosed,
    DoorOpened,
    EmergencyHeld,
    EmergencyReleased,
    HardwareEvent,
    HardwareFault,
    HardwareRestored,
)
from hardware.gpio import BoothGpio, SimulatedWiring, make_mock_factory
from kiosk.config import Backend, Contact, Contacts, Hardware, Pins
from kiosk.errors import HardwareError

DOOR, BUTTON, OCCUPANCY, ALARM, BUZZER, DOOR_CHECK, BUTTON_CHECK = 17, 22, 5, 6, 13, 27, 23

HOLD_S = 0.06
FAULT_S = 0.08
DEBOUNCE_S = 0.01


def hardware(
    door: Contact = Contact.NC,
    button: Contact = Contact.NC,
    supervised: bool = False,
    hold_s: float = HOLD_S,
    fault_s: float = FAULT_S,
) -> Hardware:
    pins = Pins(DOOR, BUTTON, OCCUPANCY, ALARM, BUZZER)
    if supervised:
        pins = replace(pins, door_supervision=DOOR_CHECK, emergency_button_supervision=BUTTON_CHECK)
    return Hardware(Backend.SIM, pins, Contacts(door, button), hold_s, fault_s)


@dataclass
class Rig:
    """A booth's GPIO with its simulated wiring, the events it emitted and when."""

    hw: Hardware
    factory: Any
    loop: asyncio.AbstractEventLoop
    gpio: BoothGpio
    wiring: SimulatedWiring
    log: list[tuple[float, HardwareEvent]] = field(default_factory=list)
    on_emit: list[Callable[[HardwareEvent], None]] = field(default_factory=list)

    @property
    def events(self) -> list[HardwareEvent]:
        return [e for _, e in self.log]

    def emit(self, event: HardwareEvent) -> None:
        self.log.append((time.monotonic(), event))
        for hook in self.on_emit:
            hook(event)

    def run(self, seconds: float = 0.0) -> None:
        assert seconds <= 0.2, "keep real sleeps short"
        self.loop.run_until_complete(asyncio.sleep(seconds))
        self.loop.run_until_complete(asyncio.sleep(0))

    def pin(self, number: int) -> Any:
        return self.factory.pin(number)

    def since(self, mark: int) -> list[HardwareEvent]:
        return self.events[mark:]


MakeRig = Callable[..., Rig]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def make_rig(loop: asyncio.AbstractEventLoop) -> Iterator[MakeRig]:
    made: list[Rig] = []
    factories: list[Any] = []

    def make(
        hw: Hardware | None = None,
        debounce_s: float = DEBOUNCE_S,
        factory: Any = None,
        before_start: Callable[[SimulatedWiring], None] | None = None,
        start: bool = True,
    ) -> Rig:
        hw = hw or hardware()
        if factory is None:
            factory = make_mock_factory(hw)
            factories.append(factory)
        wiring = SimulatedWiring(factory, hw)
        rig = Rig(hw, factory, loop, None, wiring)  # type: ignore[arg-type]
        rig.gpio = BoothGpio(hw, rig.emit, loop, pin_factory=factory, debounce_s=debounce_s)
        made.append(rig)
        if before_start is not None:
            before_start(wiring)
        if start:
            rig.gpio.start()
        return rig

    yield make
    for rig in made:
        rig.gpio.close()
    for factory in factories:
        factory.reset()


# ---------------------------------------------------------------- door


@pytest.mark.parametrize("contact", [Contact.NC, Contact.NO])
def test_door_events_follow_the_door(make_rig: MakeRig, contact: Contact) -> None:
    rig = make_rig(hardware(door=contact))
    assert rig.events == [DoorClosed()]
    assert rig.gpio.door_open is False
    rig.wiring.open_door()
    rig.run(2 * DEBOUNCE_S)
    assert rig.events == [DoorClosed(), DoorOpened()]
    assert rig.gpio.door_open is True
    rig.wiring.close_door()
    rig.run(2 * DEBOUNCE_S)
    assert rig.events == [DoorClosed(), DoorOpened(), DoorClosed()]


@pytest.mark.parametrize(
    ("contact", "shut_level", "open_level"),
    [(Contact.NC, False, True), (Contact.NO, True, False)],
)
def test_wiring_drives_pins_by_contact_type(
    make_rig: MakeRig, contact: Contact, shut_level: bool, open_level: bool
) -> None:
    """Closed contact = pin pulled to ground = LOW; NC is closed while the door is shut."""
    rig = make_rig(hardware(door=contact, button=contact))
    assert rig.pin(DOOR).state is shut_level
    assert rig.pin(BUTTON).state is shut_level
    rig.wiring.open_door()
    rig.wiring.press_emergency()
    assert rig.pin(DOOR).state is open_level
    assert rig.pin(BUTTON).state is open_level


def test_supervision_pin_is_the_complementary_contact(make_rig: MakeRig) -> None:
    rig = make_rig(hardware(supervised=True))
    assert (rig.pin(DOOR).state, rig.pin(DOOR_CHECK).state) == (False, True)
    rig.wiring.open_door()
    assert (rig.pin(DOOR).state, rig.pin(DOOR_CHECK).state) == (True, False)
    rig.wiring.cut("door")
    assert (rig.pin(DOOR).state, rig.pin(DOOR_CHECK).state) == (True, True)
    rig.wiring.short("door")
    assert (rig.pin(DOOR).state, rig.pin(DOOR_CHECK).state) == (False, False)
    with pytest.raises(ValueError, match="role must be one of"):
        rig.wiring.cut("window")


def test_start_reports_an_open_door(make_rig: MakeRig) -> None:
    rig = make_rig(before_start=lambda w: w.open_door())
    assert rig.events == [DoorOpened()]


def test_unconnected_nc_inputs_fail_safe(make_rig: MakeRig) -> None:
    """A bare MockFactory is a Pi with nothing wired: NC loops read open door, pressed button."""
    factory = MockFactory()
    try:
        rig = make_rig(factory=factory)
        rig.run(HOLD_S + 0.03)
        assert rig.events == [DoorOpened(), EmergencyHeld()]
        rig.gpio.close()
    finally:
        factory.reset()


def burst(pin: Any, edges: int, final_high: bool) -> None:
    """Contact chatter: ``edges`` alternating levels as fast as the mock can drive them."""
    level = not final_high if edges % 2 else final_high
    for _ in range(edges):
        level = not level
        pin.drive_high() if level else pin.drive_low()


def door_events_from_chatter(rig: Rig) -> list[HardwareEvent]:
    """The shut door's contact chatters (a slam), ends where it started: E2 says nothing happens."""
    mark = len(rig.events)
    for _ in range(5):
        burst(rig.pin(DOOR), 6, final_high=False)
        rig.run(DEBOUNCE_S / 3)
    rig.run(3 * DEBOUNCE_S)
    return rig.since(mark)


def test_door_chatter_is_not_reported(make_rig: MakeRig) -> None:
    assert door_events_from_chatter(make_rig()) == []


def test_twin_door_chatter_is_reported_without_debounce(make_rig: MakeRig) -> None:
    assert door_events_from_chatter(make_rig(debounce_s=0.0)) != []


# ---------------------------------------------------------------- emergency (E1, E2)


def test_emergency_hold_raises_alarm_and_release_is_reported(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.wiring.press_emergency()
    rig.run(HOLD_S + 0.03)
    assert rig.since(1) == [EmergencyHeld()]
    assert rig.pin(ALARM).state is True
    assert rig.pin(BUZZER).state is True
    rig.wiring.release_emergency()
    rig.run(3 * DEBOUNCE_S)
    assert rig.since(1) == [EmergencyHeld(), EmergencyReleased()]
    assert rig.pin(ALARM).state is True, "letting go never silences the alarm"
    rig.gpio.set_alarm(False)
    assert (rig.pin(ALARM).state, rig.pin(BUZZER).state) == (False, False)


@pytest.mark.parametrize("contact", [Contact.NC, Contact.NO])
def test_release_before_hold_time_is_nothing(make_rig: MakeRig, contact: Contact) -> None:
    rig = make_rig(hardware(button=contact, hold_s=0.1))
    rig.wiring.press_emergency()
    rig.run(0.04)
    rig.wiring.release_emergency()
    rig.run(0.12)
    assert rig.since(1) == []
    assert rig.pin(ALARM).state is False


def check_local_alarm_before_report(rig: Rig) -> float:
    """E1: at the moment EmergencyHeld is emitted the light and buzzer are already on,
    and that moment is within 200 ms of the hold threshold. Returns the lateness."""
    seen: list[tuple[bool, bool]] = []

    def look(event: HardwareEvent) -> None:
        if isinstance(event, EmergencyHeld):
            seen.append((rig.pin(ALARM).state, rig.pin(BUZZER).state))

    rig.on_emit.append(look)
    pressed_at = time.monotonic()
    rig.wiring.press_emergency()
    rig.run(rig.hw.emergency_hold_seconds + 0.05)
    held_at = [t for t, e in rig.log if isinstance(e, EmergencyHeld)]
    assert seen == [(True, True)], "alarm was not on when the booth was told"
    late = held_at[0] - (pressed_at + rig.hw.emergency_hold_seconds)
    assert -1e-3 <= late <= 0.2
    return late


def test_local_alarm_is_on_before_emergency_is_reported(make_rig: MakeRig) -> None:
    check_local_alarm_before_report(make_rig())


def test_twin_without_local_alarm_the_check_fails(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.gpio.set_alarm = lambda on: None  # type: ignore[method-assign]
    with pytest.raises(AssertionError, match="alarm was not on"):
        check_local_alarm_before_report(rig)


def test_alarm_sounds_even_if_the_booth_is_broken(make_rig: MakeRig) -> None:
    """emit raising (a dead controller) neither stops the alarm nor later events."""
    rig = make_rig()

    def explode(event: HardwareEvent) -> None:
        raise RuntimeError("controller is gone")

    rig.on_emit.append(explode)
    rig.wiring.press_emergency()
    rig.run(HOLD_S + 0.03)
    rig.wiring.release_emergency()
    rig.run(3 * DEBOUNCE_S)
    assert rig.pin(ALARM).state is True
    assert rig.since(1) == [EmergencyHeld(), EmergencyReleased()]


def button_events_from_chatter(rig: Rig) -> list[HardwareEvent]:
    """Bursts of contact bounce, knocks and taps, each press well under hold_s: E2 says 0."""
    mark = len(rig.events)
    for edges in (2, 6, 12, 2, 20):
        burst(rig.pin(BUTTON), edges, final_high=False)
        rig.run(0.005)
    rig.wiring.press_emergency()
    rig.run(0.01)
    rig.wiring.release_emergency()
    rig.run(rig.hw.emergency_hold_seconds + 0.02)
    return rig.since(mark)


def test_bounces_and_taps_raise_no_alarm(make_rig: MakeRig) -> None:
    rig = make_rig(hardware(hold_s=0.1))
    assert button_events_from_chatter(rig) == []
    assert rig.pin(ALARM).state is False


def test_twin_without_hold_time_bounces_raise_the_alarm(make_rig: MakeRig) -> None:
    rig = make_rig(hardware(hold_s=0.0))
    assert EmergencyHeld() in button_events_from_chatter(rig)


def test_bounce_during_a_hold_does_not_restart_it(make_rig: MakeRig) -> None:
    rig = make_rig(hardware(hold_s=0.1), debounce_s=0.03)
    rig.wiring.press_emergency()
    rig.run(0.05)
    burst(rig.pin(BUTTON), 4, final_high=True)  # NC: pressed is HIGH
    rig.run(0.07)
    assert rig.since(1) == [EmergencyHeld()]


def test_callbacks_from_another_thread_reach_emit_on_the_loop(make_rig: MakeRig) -> None:
    rig = make_rig()
    threads: list[int] = []
    rig.on_emit.append(lambda e: threads.append(threading.get_ident()))
    presser = threading.Thread(target=rig.wiring.press_emergency)
    presser.start()
    presser.join()
    rig.run(HOLD_S + 0.03)
    assert rig.since(1) == [EmergencyHeld()]
    assert threads == [threading.get_ident()]


# ---------------------------------------------------------------- outputs


def test_alarm_light_steady_and_buzzer_beeps(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.gpio.set_alarm(True)
    rig.gpio.set_alarm(True)
    assert (rig.pin(ALARM).state, rig.pin(BUZZER).state) == (True, True)
    rig.run(0.1)
    assert rig.pin(BUZZER).state is True, "the buzzer's first beep lasts 0.5 s"
    rig.gpio.set_alarm(False)
    assert (rig.pin(ALARM).state, rig.pin(BUZZER).state) == (False, False)

    rig.gpio.BEEP_SECONDS = 0.01
    rig.pin(BUZZER).clear_states()
    rig.pin(ALARM).clear_states()
    rig.gpio.set_alarm(True)
    time.sleep(0.1)
    rig.gpio.set_alarm(False)
    beeps = [s.state for s in rig.pin(BUZZER).states]
    assert beeps[:5] == [False, True, False, True, False]
    assert [s.state for s in rig.pin(ALARM).states] == [False, True, False]
    settled = len(rig.pin(BUZZER).states)
    time.sleep(0.03)
    assert len(rig.pin(BUZZER).states) == settled, "the beep thread stopped"


def test_occupancy_light(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.gpio.set_occupancy_light(True)
    assert rig.pin(OCCUPANCY).state is True
    rig.gpio.set_occupancy_light(False)
    assert rig.pin(OCCUPANCY).state is False


def test_close_is_idempotent_and_frees_everything(make_rig: MakeRig) -> None:
    rig = make_rig(hardware(supervised=True))
    threads = threading.active_count()
    rig.gpio.set_alarm(True)
    assert threading.active_count() == threads + 1, "the buzzer beeps on its own thread"
    rig.wiring.press_emergency()
    rig.gpio.close()
    rig.gpio.close()
    rig.run(HOLD_S + 0.03)
    assert rig.since(1) == [], "no timer or late edge fires after close"
    assert threading.active_count() == threads
    with pytest.raises(RuntimeError, match="closed"):
        rig.gpio.set_alarm(True)
    again = make_rig(rig.hw, factory=rig.factory)  # every pin was released
    assert again.events == [DoorClosed()]


# ---------------------------------------------------------------- supervision (E3)


def check_fault_reported(rig: Rig, role: str, action: str, reason: str) -> None:
    """The wire is cut or shorted: HardwareFault within fault_s (+ margin); repaired: restored."""
    mark = len(rig.events)
    getattr(rig.wiring, action)(role)
    started = time.monotonic()
    rig.run(FAULT_S + 0.04)
    faults = [(t, e) for t, e in rig.log[mark:] if isinstance(e, HardwareFault)]
    assert [e for _, e in faults] == [HardwareFault(role, reason)], rig.since(mark)
    assert FAULT_S - 0.005 <= faults[0][0] - started <= FAULT_S + 0.04
    rig.wiring.repair(role)
    rig.run(FAULT_S + 0.04)
    assert HardwareRestored(role) in rig.since(mark)


@pytest.mark.parametrize("role", ["door", "emergency_button"])
@pytest.mark.parametrize(("action", "reason"), [("cut", "cut"), ("short", "short")])
def test_cut_and_short_wires_are_reported(
    make_rig: MakeRig, role: str, action: str, reason: str
) -> None:
    check_fault_reported(make_rig(hardware(supervised=True)), role, action, reason)


@pytest.mark.parametrize("role", ["door", "emergency_button"])
@pytest.mark.parametrize(("action", "reason"), [("cut", "cut"), ("short", "short")])
def test_twin_unsupervised_wiring_faults_go_unnoticed(
    make_rig: MakeRig, role: str, action: str, reason: str
) -> None:
    with pytest.raises(AssertionError):
        check_fault_reported(make_rig(hardware(supervised=False)), role, action, reason)


def test_door_fault_mutes_door_events_until_restored(make_rig: MakeRig) -> None:
    rig = make_rig(hardware(supervised=True))
    rig.wiring.short("door")  # a short reads as "closed": the door cannot be believed
    rig.run(FAULT_S + 0.03)
    assert rig.since(1) == [HardwareFault("door", "short")]
    assert rig.gpio.door_open is True
    rig.wiring.open_door()  # unseen through the short
    rig.wiring.repair("door")  # now the pins say "open", but the loop is not trusted yet
    rig.run(3 * DEBOUNCE_S)
    assert rig.since(2) == []
    rig.run(FAULT_S)
    assert rig.since(2) == [HardwareRestored("door"), DoorOpened()]
    rig.wiring.close_door()
    rig.run(3 * DEBOUNCE_S)
    assert rig.since(2) == [HardwareRestored("door"), DoorOpened(), DoorClosed()]
    assert rig.gpio.door_open is False


def test_wire_flicker_shorter_than_fault_s_is_not_reported(make_rig: MakeRig) -> None:
    rig = make_rig(hardware(supervised=True))
    for _ in range(3):
        rig.wiring.cut("emergency_button")
        rig.run(FAULT_S / 4)
        rig.wiring.repair("emergency_button")
        rig.run(FAULT_S / 4)
    rig.run(FAULT_S)
    assert not [e for e in rig.events if isinstance(e, HardwareFault)]


def test_fault_present_at_start_is_reported(make_rig: MakeRig) -> None:
    rig = make_rig(hardware(supervised=True), before_start=lambda w: w.short("emergency_button"))
    started = time.monotonic()
    rig.run(FAULT_S + 0.03)
    assert rig.events == [DoorClosed(), HardwareFault("emergency_button", "short")]
    assert rig.log[1][0] - started <= FAULT_S + 0.03


def test_cut_emergency_loop_fails_safe(make_rig: MakeRig) -> None:
    """A cut NC loop reads as a press: the alarm sounds, and the fault says why."""
    rig = make_rig(hardware(supervised=True, hold_s=0.05, fault_s=0.1))
    rig.wiring.cut("emergency_button")
    rig.run(0.15)
    assert rig.since(1) == [EmergencyHeld(), HardwareFault("emergency_button", "cut")]
    assert rig.pin(ALARM).state is True


# ---------------------------------------------------------------- errors


def test_bad_pin_names_device_pin_and_setting(make_rig: MakeRig) -> None:
    hw = replace(hardware(), pins=replace(hardware().pins, emergency_button=99))
    with pytest.raises(HardwareError, match=r"^emergency button \(GPIO 99\): no such pin"):
        make_mock_factory(hw)
    factory = make_mock_factory(hardware())
    try:
        rig = make_rig(hw, factory=factory, start=False)
        with pytest.raises(HardwareError) as caught:
            rig.gpio.start()
    finally:
        factory.reset()
    assert str(caught.value) == (
        "emergency button (GPIO 99): no such pin on this board; "
        "choose a GPIO number 0-27 in hardware.pins.emergency_button"
    )


def test_pin_in_use_names_device_pin_and_fix(make_rig: MakeRig) -> None:
    first = make_rig()
    second = make_rig(first.hw, factory=first.factory, start=False)
    with pytest.raises(HardwareError) as caught:
        second.gpio.start()
    assert str(caught.value) == (
        "door (GPIO 17): pin already in use by another program; "
        "stop it or choose another pin in hardware.pins.door"
    )
    first.gpio.close()
    third = make_rig(first.hw, factory=first.factory)  # the failed start released its pins
    assert third.events == [DoorClosed()]


def test_supervision_pin_in_use_names_it(make_rig: MakeRig) -> None:
    hw = hardware(supervised=True)
    hw = replace(hw, pins=replace(hw.pins, door_supervision=BUZZER))
    rig = make_rig(hw, start=False)
    with pytest.raises(HardwareError, match=r"^buzzer \(GPIO 13\): pin already in use"):
        rig.gpio.start()


def test_no_pin_driver_is_a_hardware_error(
    monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop
) -> None:
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-driver")
    gpio = BoothGpio(hardware(), lambda e: None, loop)
    with pytest.raises(HardwareError, match=r"no pin driver could be loaded.*python3-lgpio"):
        gpio.start()
    gpio.close()


def test_default_factory_is_used_when_none_is_given(loop: asyncio.AbstractEventLoop) -> None:
    """conftest selects gpiozero's mock driver by name; BoothGpio builds its own instance."""
    events: list[HardwareEvent] = []
    gpio = BoothGpio(hardware(), events.append, loop)
    gpio.start()
    gpio.close()
    assert events == [DoorOpened()]  # nothing wired to the fresh mock pins: fail-safe open


def test_alarm_light_comes_on_even_if_the_buzzer_fails(make_rig: MakeRig) -> None:
    rig = make_rig()

    class DeadBuzzer:
        def on(self) -> None:
            raise OSError("[Errno 5] Input/output error")

        off = beep = close = on

    rig.gpio._buzzer = DeadBuzzer()  # type: ignore[assignment]
    with pytest.raises(HardwareError, match=r"^buzzer \(GPIO 13\): could not be used \(OSError"):
        rig.gpio.set_alarm(True)
    assert rig.pin(ALARM).state is True
