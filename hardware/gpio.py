"""The booth's GPIO on gpiozero: door, emergency button, lights and buzzer.

gpiozero calls back on its own threads (on ``MockFactory``, in whichever
thread drove the pin). Each callback only stamps the edge with
``time.monotonic()`` and hands it to the event loop with
``call_soon_threadsafe``; all timing is done by the pure detectors in
:mod:`hardware.debounce` on the loop thread, with one ``loop.call_at`` timer
at the earliest deadline any of them has. ``emit`` is only called there.

Contacts switch to ground against the internal pull-up, so a closed contact
reads LOW (gpiozero: active). Normally-closed contacts fail safe: a cut wire
reads as an open door or a pressed button. A supervision pin, when wired, is
the other contact of the same changeover switch and is only used to notice
cut or shorted wiring; it never mutes the emergency button.

The local alarm does not depend on anything else in the booth: when a hold
completes, this module turns the alarm on before it reports
``EmergencyHeld``. Only the controller turns it off again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, Final, Protocol, TypeVar

from gpiozero import LED, Buzzer, Device, DigitalInputDevice
from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinInvalidPin
from gpiozero.pins.mock import MockFactory, MockPin

from hardware.debounce import Debouncer, HoldDetector, SupervisedContact
from hardware.events import (
    DoorClosed,
    DoorOpened,
    EmergencyHeld,
    HardwareEvent,
    HardwareFault,
    HardwareRestored,
)
from kiosk.config import Contact, Hardware, Pins
from kiosk.errors import HardwareError

__all__ = ["ROLES", "BoothGpio", "SimulatedWiring", "make_mock_factory"]

_log = logging.getLogger(__name__)

ROLES: Final = ("door", "emergency_button")
"""The supervisable inputs, by role; ``<role>_supervision`` names their second pin."""

GPIO_MAX: Final = 27

_T = TypeVar("_T")


class _Input(Protocol):
    """The part of ``gpiozero.DigitalInputDevice`` this module relies on."""

    @property
    def is_active(self) -> bool: ...

    when_activated: Callable[[], None] | None
    when_deactivated: Callable[[], None] | None

    def close(self) -> None: ...


class _Output(Protocol):
    """The part of ``gpiozero.LED`` / ``Buzzer`` this module relies on."""

    def on(self) -> None: ...

    def off(self) -> None: ...

    def close(self) -> None: ...


class _Beeper(_Output, Protocol):
    def beep(self, on_time: float, off_time: float) -> None: ...


def _label(key: str) -> str:
    return key.replace("_", " ")


def _explain(key: str, pin: int, exc: BaseException) -> str:
    """A technician's sentence: which device, which pin, what went wrong, what to do."""
    setting = f"hardware.pins.{key}"
    text = str(exc).lower()
    if isinstance(exc, GPIOPinInUse) or "busy" in text or "in use" in text:
        why = f"pin already in use by another program; stop it or choose another pin in {setting}"
    elif isinstance(exc, PinInvalidPin):
        why = f"no such pin on this board; choose a GPIO number 0-{GPIO_MAX} in {setting}"
    elif isinstance(exc, PermissionError) or "permission" in text:
        why = (
            "permission denied; add the kiosk's user to the gpio group "
            "(it needs read/write access to /dev/gpiochip*)"
        )
    else:
        why = f"could not be used ({type(exc).__name__}: {exc}); check {setting} and the wiring"
    return f"{_label(key)} (GPIO {pin}): {why}"


@contextmanager
def _device(key: str, pin: int) -> Iterator[None]:
    """Re-raise gpiozero's (and its drivers') errors as HardwareError naming the device."""
    try:
        yield
    except HardwareError:
        raise
    except Exception as exc:
        raise HardwareError(_explain(key, pin, exc)) from exc


def _default_factory() -> Any:
    """gpiozero's own choice (``GPIOZERO_PIN_FACTORY`` or lgpio first), without
    setting its process-wide ``Device.pin_factory``."""
    try:
        return Device._default_pin_factory()
    except Exception as exc:
        why = str(exc) if isinstance(exc, BadPinFactory) else f"{type(exc).__name__}: {exc}"
        raise HardwareError(
            f"GPIO: no pin driver could be loaded ({why}); on the Raspberry Pi install "
            'python3-lgpio; elsewhere set hardware.backend = "sim" or run with --simulate'
        ) from exc


def _contact_active(contact: Contact, closed: bool) -> bool:
    """Door open / button pressed, from whether the main contact is closed."""
    return closed if contact is Contact.NO else not closed


class BoothGpio:
    """The booth's door, emergency button, occupancy light, alarm light and buzzer.

    Construct and call every method on the event loop's thread (the thread
    that runs or will run ``loop``); only gpiozero's callbacks arrive
    elsewhere, and they are moved onto the loop at once.
    """

    BEEP_SECONDS: float = 0.5
    """Buzzer on time and off time while the alarm sounds."""

    def __init__(
        self,
        hw: Hardware,
        emit: Callable[[HardwareEvent], None],
        loop: asyncio.AbstractEventLoop,
        pin_factory: Any | None = None,
        debounce_s: float = 0.03,
    ) -> None:
        self._hw = hw
        self._emit = emit
        self._loop = loop
        self._factory = pin_factory
        self._own_factory = pin_factory is None
        self._debounce_s = debounce_s
        self._door = Debouncer(debounce_s, True)
        self._hold = HoldDetector(hw.emergency_hold_seconds, debounce_s)
        self._supervision = {
            role: SupervisedContact(role, hw.wiring_fault_seconds)
            for role in ROLES
            if _supervision_pin(hw.pins, role) is not None
        }
        self._inputs: dict[str, _Input] = {}
        self._contact_closed: dict[str, bool] = {}
        self._occupancy: _Output | None = None
        self._alarm_light: _Output | None = None
        self._buzzer: _Beeper | None = None
        self._door_reported: bool | None = None
        self._alarm = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf
        self._started = False
        self._closed = False

    # ------------------------------------------------------------ public

    def start(self) -> None:
        """Open the devices, report the door, and start watching the wiring.

        Raises :class:`HardwareError` naming the device and pin if any cannot
        be opened; whatever was opened by then is closed again.
        """
        if self._started:
            raise RuntimeError("BoothGpio.start() was already called")
        self._check_thread()
        self._started = True
        try:
            self._open_devices()
        except BaseException:
            self.close()
            raise
        # Read after the callbacks are attached: an edge in between is queued
        # behind this and then repeats the level read here, which changes nothing.
        now = time.monotonic()
        for key, device in self._inputs.items():
            self._contact_closed[key] = bool(device.is_active)
        self._door = Debouncer(self._debounce_s, self._raw_door_open())
        self._report_door(force=True)
        self._feed("door", now)
        self._feed("emergency_button", now)
        self._rearm()

    @property
    def door_open(self) -> bool:
        """The debounced door; True before start and while its wiring is faulty
        (privacy is never assumed)."""
        supervision = self._supervision.get("door")
        return self._door.value or (supervision is not None and supervision.faulty)

    def set_occupancy_light(self, on: bool) -> None:
        """Light (or darken) the 'booth in use' light outside the door."""
        light = self._require(self._occupancy)
        with _device("occupancy_light", self._hw.pins.occupancy_light):
            light.on() if on else light.off()

    def set_alarm(self, on: bool) -> None:
        """Alarm light steady on and buzzer beeping, or both off.

        Turning it on again while on changes nothing (the beat is not
        restarted). If one device fails the other is still driven, then the
        first error is raised.
        """
        light, buzzer = self._require(self._alarm_light), self._require(self._buzzer)
        if on and self._alarm:
            return
        pins = self._hw.pins
        failure: HardwareError | None = None
        for key, pin, step in (
            ("alarm_light", pins.alarm_light, light.on if on else light.off),
            ("buzzer", pins.buzzer, partial(self._beep, buzzer) if on else buzzer.off),
        ):
            try:
                with _device(key, pin):
                    step()
            except HardwareError as exc:
                _log.error("%s", exc)
                failure = failure or exc
        self._alarm = on and failure is None
        _log.warning("local alarm %s", "on" if on else "off")
        if failure is not None:
            raise failure

    def _beep(self, buzzer: _Beeper) -> None:
        buzzer.on()  # at once, not when the beep thread gets scheduled
        buzzer.beep(on_time=self.BEEP_SECONDS, off_time=self.BEEP_SECONDS)

    def close(self) -> None:
        """Stop timers and the buzzer thread and release every pin. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        devices: list[_Input | _Output | None] = [
            self._buzzer,
            self._alarm_light,
            self._occupancy,
            *self._inputs.values(),
        ]
        for device in devices:
            if device is None:
                continue
            try:
                device.close()
            except Exception:
                _log.exception("closing %r failed", device)
        self._inputs.clear()
        self._buzzer = self._alarm_light = self._occupancy = None
        if self._own_factory and self._factory is not None:
            try:
                self._factory.close()
            except Exception:
                _log.exception("closing the pin factory failed")
            self._factory = None

    # ------------------------------------------------------------ opening

    def _check_thread(self) -> None:
        if not self._loop.is_running():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            raise RuntimeError("BoothGpio must be used on its event loop's thread")

    def _open_devices(self) -> None:
        if self._factory is None:
            self._factory = _default_factory()
        factory = self._factory
        pins = self._hw.pins
        for role in ROLES:
            self._open_input(role, getattr(pins, role))
            check = _supervision_pin(pins, role)
            if check is not None:
                self._open_input(f"{role}_supervision", check)
        with _device("occupancy_light", pins.occupancy_light):
            self._occupancy = LED(pins.occupancy_light, pin_factory=factory)
        with _device("alarm_light", pins.alarm_light):
            self._alarm_light = LED(pins.alarm_light, pin_factory=factory)
        with _device("buzzer", pins.buzzer):
            self._buzzer = Buzzer(pins.buzzer, pin_factory=factory)

    def _open_input(self, key: str, pin: int) -> None:
        with _device(key, pin):
            device: _Input = DigitalInputDevice(
                pin, pull_up=True, bounce_time=None, pin_factory=self._factory
            )
            self._inputs[key] = device
            device.when_activated = partial(self._edge_on_thread, key, True)
            device.when_deactivated = partial(self._edge_on_thread, key, False)

    def _require(self, device: _T | None) -> _T:
        if device is None:
            state = "closed" if self._closed else "not started"
            raise RuntimeError(f"BoothGpio is {state}")
        return device

    # ------------------------------------------------------------ edges and time

    def _edge_on_thread(self, key: str, closed: bool) -> None:
        """gpiozero's thread: stamp the edge now, handle it on the loop."""
        stamp = time.monotonic()
        with suppress(RuntimeError):  # the loop is closed: the booth is shutting down
            self._loop.call_soon_threadsafe(self._on_edge, key, closed, stamp)

    def _on_edge(self, key: str, closed: bool, stamp: float) -> None:
        if self._closed:
            return
        self._catch_up(stamp)
        self._contact_closed[key] = closed
        self._feed(key.removesuffix("_supervision"), stamp)
        self._rearm()

    def _feed(self, role: str, now: float) -> None:
        """Give a role's detectors the current contact levels."""
        supervision = self._supervision.get(role)
        if supervision is not None:
            main = self._contact_closed[role]
            check = self._contact_closed[f"{role}_supervision"]
            self._on_wiring(role, supervision.update(main, check, now))
        if role == "door":
            self._on_door(self._door.update(self._raw_door_open(), now))
        else:
            self._on_button(self._hold.update(self._raw_pressed(), now))

    def _deadlines(self) -> Iterator[tuple[float | None, Callable[[float], None]]]:
        for role, supervision in self._supervision.items():
            yield supervision.deadline(), partial(self._poll_wiring, role)
        yield self._door.deadline(), self._poll_door
        yield self._hold.deadline(), self._poll_button

    def _catch_up(self, now: float) -> None:
        """Run everything due up to ``now``, each at its own deadline, earliest first."""
        for _ in range(1000):  # each poll clears its deadline; never spin the loop forever
            due, poll = min(
                ((d, p) for d, p in self._deadlines() if d is not None),
                key=lambda pair: pair[0],
                default=(None, None),
            )
            if due is None or poll is None or due > now:
                return
            poll(due)
        _log.error("detectors kept asking for time at %s; carrying on", now)

    def _rearm(self) -> None:
        due = min((d for d, _ in self._deadlines() if d is not None), default=math.inf)
        if due == self._timer_due or self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due < math.inf:
            when = self._loop.time() + (due - time.monotonic())
            self._timer = self._loop.call_at(when, self._on_timer, due)

    def _on_timer(self, due: float) -> None:
        self._timer = None
        self._timer_due = math.inf
        if self._closed:
            return
        self._catch_up(max(time.monotonic(), due))
        self._rearm()

    def _poll_wiring(self, role: str, now: float) -> None:
        self._on_wiring(role, self._supervision[role].poll(now))

    def _poll_door(self, now: float) -> None:
        self._on_door(self._door.poll(now))

    def _poll_button(self, now: float) -> None:
        self._on_button(self._hold.poll(now))

    # ------------------------------------------------------------ reporting

    def _raw_door_open(self) -> bool:
        return _contact_active(self._hw.contacts.door, self._contact_closed["door"])

    def _raw_pressed(self) -> bool:
        return _contact_active(
            self._hw.contacts.emergency_button, self._contact_closed["emergency_button"]
        )

    def _send(self, event: HardwareEvent) -> None:
        """Hand one event over; a failing receiver must not stop the alarm or the timers."""
        try:
            self._emit(event)
        except Exception:
            _log.exception("emit(%r) failed", event)

    def _on_wiring(self, role: str, events: list[HardwareEvent]) -> None:
        for event in events:
            if isinstance(event, HardwareFault):
                _log.warning("%s wiring fault: %s", _label(role), event.reason)
            else:
                _log.warning("%s wiring restored", _label(role))
            self._send(event)
            if role == "door" and isinstance(event, HardwareRestored):
                self._report_door(force=True)

    def _on_door(self, changed: bool | None) -> None:
        if changed is not None:
            self._report_door(force=False)

    def _report_door(self, force: bool) -> None:
        supervision = self._supervision.get("door")
        if supervision is not None and supervision.faulty:
            return
        is_open = self._door.value
        if force or is_open != self._door_reported:
            self._door_reported = is_open
            self._send(DoorOpened() if is_open else DoorClosed())

    def _on_button(self, events: list[HardwareEvent]) -> None:
        for event in events:
            if isinstance(event, EmergencyHeld):
                try:
                    self.set_alarm(True)
                except Exception:
                    _log.exception("could not turn the local alarm on")
            self._send(event)


def _supervision_pin(pins: Pins, role: str) -> int | None:
    pin: int | None = getattr(pins, f"{role}_supervision")
    return pin


# ---------------------------------------------------------------- simulation


class _WiredPin(MockPin):  # type: ignore[misc]
    """A mock input whose level, once driven, survives a device setting its pull.

    A contact to ground overpowers the internal pull-up; a plain ``MockPin``
    snaps back to its pull when a device opens it, which would make every
    simulated booth start with its door open and its wires cut.
    """

    _wired: bool | None = None

    def drive_high(self) -> None:
        super().drive_high()
        self._wired = True

    def drive_low(self) -> None:
        super().drive_low()
        self._wired = False

    def _set_pull(self, value: str) -> None:
        wired = self._wired
        super()._set_pull(value)
        if wired is not None and self._state != wired:
            self.drive_high() if wired else self.drive_low()
        self._wired = wired


class SimulatedWiring:
    """The simulator's hands on the mock pins: a door, a button and their wires.

    Each action sets the pins the way the real switch would, respecting the
    configured normally-closed / normally-open wiring and the supervision
    contact. A changeover breaks before it makes: the contact that opens is
    driven first. Callbacks run synchronously in the calling thread.
    """

    def __init__(self, factory: MockFactory, hw: Hardware) -> None:
        self._factory = factory
        self._hw = hw
        self._actuated = dict.fromkeys(ROLES, False)
        self._fault: dict[str, str | None] = dict.fromkeys(ROLES, None)

    def open_door(self) -> None:
        self._set("door", actuated=True)

    def close_door(self) -> None:
        self._set("door", actuated=False)

    def press_emergency(self) -> None:
        self._set("emergency_button", actuated=True)

    def release_emergency(self) -> None:
        self._set("emergency_button", actuated=False)

    def cut(self, role: str) -> None:
        """Cut the switch's common wire: every contact reads open."""
        self._set_fault(role, "cut")

    def short(self, role: str) -> None:
        """Short the wires together: every contact reads closed."""
        self._set_fault(role, "short")

    def repair(self, role: str) -> None:
        self._set_fault(role, None)

    def rest_all(self) -> None:
        """Drive every input to its current simulated level (resting, at first)."""
        for role in ROLES:
            self._apply(role)

    def contacts_closed(self, role: str) -> tuple[bool, bool | None]:
        """(main contact closed, supervision contact closed or None if not wired), as wired now."""
        fault = self._fault[role]
        if fault == "cut":
            main = False
        elif fault == "short":
            main = True
        else:
            contact: Contact = getattr(self._hw.contacts, role)
            main = self._actuated[role] if contact is Contact.NO else not self._actuated[role]
        if _supervision_pin(self._hw.pins, role) is None:
            return main, None
        if fault is not None:
            return main, main
        return main, not main

    def _check(self, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")

    def _set(self, role: str, actuated: bool) -> None:
        self._actuated[role] = actuated
        self._apply(role)

    def _set_fault(self, role: str, fault: str | None) -> None:
        self._check(role)
        self._fault[role] = fault
        self._apply(role)

    def _apply(self, role: str) -> None:
        main, check = self.contacts_closed(role)
        drives = [(role, getattr(self._hw.pins, role), main)]
        check_pin = _supervision_pin(self._hw.pins, role)
        if check_pin is not None and check is not None:
            drives.append((f"{role}_supervision", check_pin, check))
        for key, pin, closed in sorted(drives, key=lambda drive: drive[2]):
            with _device(key, pin):
                mock = self._factory.pin(pin)
                mock.drive_low() if closed else mock.drive_high()


def make_mock_factory(hw: Hardware) -> Any:
    """A fresh ``MockFactory`` with every input at rest: healthy wiring, door shut, button up."""
    factory = MockFactory(pin_class=_WiredPin)
    SimulatedWiring(factory, hw).rest_all()
    return factory
