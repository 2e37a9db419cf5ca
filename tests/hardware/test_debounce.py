"""E2 and E3 on the pure detectors, in virtual time.

Hypothesis generates thousands of bouncing press/release sequences and
wiring flickers; each is replayed against the detector (polling exactly at
its deadlines, as the GPIO code does) and compared with a reference model
written here from the docstrings, not from the implementation. Every check
has a twin that removes the protection and must see the check fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from hardware.debounce import Debouncer, HoldDetector, SupervisedContact
from hardware.events import (
    EmergencyHeld,
    EmergencyReleased,
    HardwareEvent,
    HardwareFault,
    HardwareRestored,
)

MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TWIN = settings(max_examples=1000, deadline=None, database=None)


class Detector(Protocol):
    def update(self, pressed: bool, now: float) -> list[HardwareEvent]: ...
    def poll(self, now: float) -> list[HardwareEvent]: ...
    def deadline(self) -> float | None: ...


@dataclass(frozen=True)
class Script:
    """Raw button samples ``(time, pressed)``, replayed until ``end``."""

    hold_s: float
    debounce_s: float
    samples: tuple[tuple[float, bool], ...]
    end: float
    press_starts: tuple[float, ...] = ()  # for generated presses: when each one begins


Timed = list[tuple[float, str]]


def _name(event: HardwareEvent) -> str:
    match event:
        case EmergencyHeld():
            return "held"
        case EmergencyReleased():
            return "released"
        case HardwareFault(reason=reason):
            return reason
        case HardwareRestored():
            return "restored"
    raise AssertionError(f"unexpected {event!r}")


def replay(detector: Detector, samples: Sequence[tuple[float, bool]], end: float) -> Timed:
    """Feed samples in order, polling at every deadline that falls before the next one."""
    out: Timed = []

    def run_until(t: float) -> None:
        for _ in range(10_000):
            due = detector.deadline()
            if due is None or due > t:
                return
            out.extend((due, _name(e)) for e in detector.poll(due))
        raise AssertionError("deadline never moved on")

    for t, pressed in samples:
        run_until(t)
        out.extend((t, _name(e)) for e in detector.update(pressed, t))
    run_until(end)
    return out


# ---------------------------------------------------------------- reference model


def reference_hold(script: Script) -> Timed:
    """The ground truth, straight from HoldDetector's docstring.

    Raw pressed stretches are joined across releases that end before
    ``release + debounce_s``; each joined press [start, release + debounce_s)
    is held at ``start + hold_s`` when that is not after its end.
    """
    stretches: list[tuple[float, float]] = []
    level, began = False, 0.0
    for t, pressed in script.samples:
        if pressed and not level:
            began = t
        elif level and not pressed:
            stretches.append((began, t))
        level = pressed
    if level:
        stretches.append((began, math.inf))

    presses: list[list[float]] = []
    for start, release in stretches:
        if presses and start < presses[-1][1] + script.debounce_s:
            presses[-1][1] = release
        else:
            presses.append([start, release])

    out: Timed = []
    for start, release in presses:
        held_at, ends_at = start + script.hold_s, release + script.debounce_s
        if held_at <= script.end and held_at <= ends_at:
            out.append((held_at, "held"))
            if ends_at <= script.end:
                out.append((ends_at, "released"))
    return out


def same_events(got: Timed, want: Timed) -> bool:
    return [n for _, n in got] == [n for _, n in want] and all(
        abs(a - b) <= 1e-9 for (a, _), (b, _) in zip(got, want, strict=True)
    )


# ---------------------------------------------------------------- strategies


class Genes:
    """Choices read from a byte string that Hypothesis generates, mutates and shrinks.

    One Hypothesis draw costs ~65 us on this VM; a script needs hundreds of
    choices, so drawing them one by one would make thousands of examples take
    minutes. Bytes are cheap, and shrinking them (shorter, towards zero) still
    shrinks the script: fewer presses, fewer bounces, earlier boundaries.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    @property
    def left(self) -> int:
        return len(self._data) - self._at

    def byte(self) -> int:
        self._at += 1
        return self._data[self._at - 1] if self._at <= len(self._data) else 0

    def pick(self, n: int) -> int:
        return self.byte() % n

    def between(self, lo: float, hi: float) -> float:
        """lo..hi inclusive, in 65536 steps."""
        return lo + (self.byte() << 8 | self.byte()) / 0xFFFF * (hi - lo)


_HOLD_S = st.one_of(st.sampled_from([0.5, 1.0, 2.0]), st.floats(0.5, 5.0))
_DEBOUNCE_S = st.one_of(st.sampled_from([0.01, 0.03, 0.05]), st.floats(0.001, 0.1))
_FAULT_S = st.one_of(st.sampled_from([0.5, 3.0, 10.0]), st.floats(0.5, 10.0))
_START = st.sampled_from([0.0, 1e4])  # far from 0, float rounding differs
_GENES = {n: st.binary(min_size=n // 4, max_size=n) for n in (120, 200)}

# One timing tuple: hold_s, debounce_s (around the booth's 1 s and 30 ms) and a start time.
timings = st.tuples(_HOLD_S, _DEBOUNCE_S, _START)


def _duration(g: Genes, pressed: bool, hold: float, d: float) -> float:
    """Durations that cluster at the edges that matter: d, hold, and hold - d."""
    edges = [d, hold, hold - d] if pressed else [d]
    kind, edge = g.pick(5), edges[g.pick(len(edges))]
    if kind == 0:
        return g.between(1e-6, 0.999 * d)  # bounce
    if kind == 1:
        return edge
    if kind == 2:
        return math.nextafter(edge, 0)
    if kind == 3:
        return math.nextafter(edge, math.inf)
    return g.between(d, 2 * hold)


@st.composite
def any_script(draw: st.DrawFn) -> Script:
    """Any raw sequence: bounces, near-misses and exact ties against d and hold_s."""
    hold, d, t = draw(timings)
    g = Genes(draw(_GENES[200]))
    samples: list[tuple[float, bool]] = []
    pressed = True
    while g.left > 0:
        samples.append((t, pressed))
        if g.pick(8) == 0:  # a repeated reading, no edge
            t += g.between(0.0, d)
            samples.append((t, pressed))
        t += _duration(g, pressed, hold, d)
        pressed = not pressed
    end = t + [0.0, d, hold, 3 * hold][g.pick(4)]
    return Script(hold, d, tuple(samples), end)


def _bouncy_press(g: Genes, t: float, span: float, d: float) -> list[tuple[float, bool]]:
    """Raw edges for one press lasting ``span`` from first contact to last release,
    chattering at both ends with gaps shorter than ``d``."""
    samples = [(t, True)]
    end = t + span
    now = t
    for _ in range(g.pick(7)):  # make-bounce
        up = now + g.between(1e-5, d / 4)
        down = up + g.between(1e-5, 0.9 * d)
        if down >= end:
            break
        samples += [(up, False), (down, True)]
        now = down
    tail = [end - (i + 1) * d / 8 for i in range(2 * g.pick(7))]  # break-bounce
    for up, down in sorted(zip(tail[1::2], tail[::2], strict=True)):
        if up > now:
            samples += [(up, False), (down, True)]
            now = down
    samples.append((end, False))
    return samples


def _next_press(g: Genes, t: float, span: float, d: float) -> float:
    """The earliest a new press may start is when the last one ends (its release + d),
    computed in the same float steps as the release itself."""
    release = t + span
    return release + d + (0.0 if g.pick(4) == 0 else g.between(0.0, 2.0))


@st.composite
def short_presses(draw: st.DrawFn) -> Script:
    """Presses (with bounces) whose debounced length stays under hold_s: E2 says 0 alarms."""
    hold, d, t = draw(timings)
    g = Genes(draw(_GENES[120]))
    samples: list[tuple[float, bool]] = []
    while g.left > 0:
        span = g.between(1e-6, hold - d - 1e-6)
        samples += _bouncy_press(g, t, span, d)
        t = _next_press(g, t, span, d)
    return Script(hold, d, tuple(samples), t + hold)


@st.composite
def long_presses(draw: st.DrawFn) -> Script:
    """Presses (with bounces) held past hold_s: E2 says exactly one alarm each, on time."""
    hold, d, t = draw(timings)
    g = Genes(draw(_GENES[120]))
    samples: list[tuple[float, bool]] = []
    starts: list[float] = []
    while g.left > 0:
        span = g.between(hold, 3 * hold)
        starts.append(t)
        samples += _bouncy_press(g, t, span, d)
        t = _next_press(g, t, span, d)
    return Script(hold, d, tuple(samples), t + hold, tuple(starts))


# ---------------------------------------------------------------- checks


def matches_reference(make: Callable[[Script], Detector], script: Script) -> bool:
    return same_events(replay(make(script), script.samples, script.end), reference_hold(script))


def false_alarms(make: Callable[[Script], Detector], script: Script) -> int:
    got = replay(make(script), script.samples, script.end)
    return sum(1 for _, name in got if name == "held")


def hold_errors(make: Callable[[Script], Detector], script: Script) -> list[str]:
    """Each generated long press must give exactly one Held, at its start + hold_s."""
    held = [t for t, name in replay(make(script), script.samples, script.end) if name == "held"]
    if len(held) != len(script.press_starts):
        return [f"{len(held)} Held for {len(script.press_starts)} long presses"]
    return [
        f"Held at {t!r}, expected {start + script.hold_s!r}"
        for t, start in zip(held, script.press_starts, strict=True)
        if abs(t - (start + script.hold_s)) > 1e-9
    ]


def real(script: Script) -> Detector:
    return HoldDetector(script.hold_s, script.debounce_s)


def no_debounce(script: Script) -> Detector:
    return HoldDetector(script.hold_s, 0.0)


def no_hold_time(script: Script) -> Detector:
    return HoldDetector(0.0, script.debounce_s)


# ---------------------------------------------------------------- HoldDetector


@MANY
@given(any_script())
def test_hold_detector_matches_reference_model(script: Script) -> None:
    got = replay(real(script), script.samples, script.end)
    assert same_events(got, reference_hold(script)), (got, reference_hold(script))


@MANY
@given(short_presses())
def test_presses_under_hold_time_never_alarm(script: Script) -> None:
    assert reference_hold(script) == []
    assert false_alarms(real, script) == 0


@MANY
@given(long_presses())
def test_every_hold_past_threshold_alarms_once_on_time(script: Script) -> None:
    assert hold_errors(real, script) == []
    assert [n for _, n in reference_hold(script)] == ["held", "released"] * len(script.press_starts)


def test_twin_without_debounce_bounces_break_holds() -> None:
    broken = find(long_presses(), lambda s: bool(hold_errors(no_debounce, s)), settings=TWIN)
    assert hold_errors(no_debounce, broken)
    assert not hold_errors(real, broken)


def test_twin_without_debounce_disagrees_with_ground_truth() -> None:
    broken = find(any_script(), lambda s: not matches_reference(no_debounce, s), settings=TWIN)
    assert matches_reference(real, broken)


def test_twin_without_hold_time_bounces_raise_false_alarms() -> None:
    broken = find(short_presses(), lambda s: false_alarms(no_hold_time, s) > 0, settings=TWIN)
    assert false_alarms(real, broken) == 0


def test_hold_ends_only_after_a_release_of_debounce_s() -> None:
    d = HoldDetector(hold_s=1.0, debounce_s=0.03)
    assert d.update(True, 10.0) == []
    assert d.deadline() == 11.0
    assert d.update(False, 10.5) == []
    assert d.update(True, 10.529) == []  # 29 ms gap: bounce
    assert d.poll(11.0) == [EmergencyHeld()]
    assert d.update(False, 12.0) == []
    assert d.deadline() == pytest.approx(12.03)
    assert d.poll(12.03) == [EmergencyReleased()]
    assert d.update(True, 12.03) == []  # a new press starts the hold again
    assert d.deadline() == 13.03


def test_late_poll_still_reports_in_order() -> None:
    d = HoldDetector(hold_s=1.0, debounce_s=0.03)
    d.update(True, 0.0)
    assert d.update(False, 0.99) == []  # the press ends at 1.02, after the hold completed
    assert d.poll(5.0) == [EmergencyHeld(), EmergencyReleased()]
    assert d.deadline() is None and not d.pressed


def test_time_going_backwards_is_clamped() -> None:
    d = HoldDetector(hold_s=1.0, debounce_s=0.03)
    d.update(True, 0.0)
    assert d.poll(1.0) == [EmergencyHeld()]
    assert d.update(False, 0.5) == []  # stamped earlier, delivered later
    assert d.deadline() == pytest.approx(1.03)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_rejects_nonsense_times(bad: float) -> None:
    with pytest.raises(ValueError, match="hold_s"):
        HoldDetector(bad, 0.03)
    with pytest.raises(ValueError, match="fault_s"):
        SupervisedContact("door", bad)


# ---------------------------------------------------------------- Debouncer (door)


def reference_debounce(samples: Sequence[tuple[float, bool]], d: float, end: float) -> Timed:
    """A level counts once it has been held, unchanged, until ``change + d``."""
    out: Timed = []
    stable, pending = False, None
    times = [t for t, _ in samples] + [end]
    for (t, raw), nxt in zip(samples, times[1:], strict=True):
        if raw == stable:
            pending = None
            continue
        if pending is None:
            pending = t
        if pending + d <= nxt:
            out.append((pending + d, str(raw)))
            stable, pending = raw, None
    return out


@SOME
@given(any_script())
def test_door_debouncer_matches_reference_model(script: Script) -> None:
    debouncer = Debouncer(script.debounce_s, False)
    out: Timed = []
    for t, raw in script.samples:
        due = debouncer.deadline()
        if due is not None and due <= t:
            out.append((due, str(debouncer.poll(due))))
        changed = debouncer.update(raw, t)
        assert changed is None
    due = debouncer.deadline()
    if due is not None and due <= script.end:
        out.append((due, str(debouncer.poll(due))))
    assert same_events(out, reference_debounce(script.samples, script.debounce_s, script.end))


# ---------------------------------------------------------------- SupervisedContact (E3)

Wiring = tuple[tuple[float, bool, bool], ...]  # (time, main closed, check closed)
Case = tuple[float, Wiring, float]  # fault_s, samples, end


class Supervisor(Protocol):
    def update(self, main_closed: bool, check_closed: bool, now: float) -> list[HardwareEvent]: ...
    def poll(self, now: float) -> list[HardwareEvent]: ...
    def deadline(self) -> float | None: ...


class NoSupervision:
    """The protection removed: a contact nobody watches."""

    def update(self, main_closed: bool, check_closed: bool, now: float) -> list[HardwareEvent]:
        return []

    def poll(self, now: float) -> list[HardwareEvent]:
        return []

    def deadline(self) -> float | None:
        return None


def replay_wiring(detector: Supervisor, samples: Wiring, end: float) -> Timed:
    out: Timed = []

    def run_until(t: float) -> None:
        while (due := detector.deadline()) is not None and due <= t:
            events = detector.poll(due)
            assert events, "deadline passed without a report"
            out.extend((due, _name(e)) for e in events)

    for t, main, check in samples:
        run_until(t)
        out.extend((t, _name(e)) for e in detector.update(main, check, t))
    run_until(end)
    return out


def reference_wiring(samples: Wiring, fault_s: float, end: float) -> Timed:
    """A condition (healthy, cut, short) is reported once it has lasted fault_s,
    unless it is the one last reported; nothing is reported before a fault."""
    runs: list[tuple[str, float]] = []
    for t, main, check in samples:
        condition = "short" if main and check else "cut" if not (main or check) else "restored"
        if not runs or runs[-1][0] != condition:
            runs.append((condition, t))
    out: Timed = []
    reported = "restored"
    stops = [t for _, t in runs[1:]] + [end]
    for (condition, start), stop in zip(runs, stops, strict=True):
        if condition != reported and start + fault_s <= stop:
            out.append((start + fault_s, condition))
            reported = condition
    return out


_LEVELS = [(True, False), (False, True), (True, True), (False, False)]


@st.composite
def wiring(draw: st.DrawFn) -> Case:
    fault_s, t = draw(_FAULT_S), draw(_START)
    g = Genes(draw(_GENES[120]))
    samples: list[tuple[float, bool, bool]] = []
    while g.left > 0:
        samples.append((t, *_LEVELS[g.pick(4)]))
        kind = g.pick(4)
        if kind == 0:
            t += fault_s
        elif kind == 1:
            t += math.nextafter(fault_s, 0)
        else:
            t += g.between(1e-4, 3 * fault_s)
    return fault_s, tuple(samples), t


@st.composite
def flicker(draw: st.DrawFn) -> Case:
    """A loose wire: cuts and shorts, each shorter than fault_s, between healthy readings."""
    fault_s, t = draw(_FAULT_S), draw(_START)
    g = Genes(draw(_GENES[120]))
    samples: list[tuple[float, bool, bool]] = [(t, True, False)]
    while g.left > 0:
        t += g.between(0.0, 2 * fault_s)
        samples.append((t, *_LEVELS[2 + g.pick(2)]))
        t += g.between(0.0, 0.999 * fault_s)
        samples.append((t, *_LEVELS[g.pick(2)]))
    return fault_s, tuple(samples), t + 2 * fault_s


@MANY
@given(wiring())
def test_supervision_matches_reference_model(case: Case) -> None:
    fault_s, samples, end = case
    got = replay_wiring(SupervisedContact("door", fault_s), samples, end)
    assert same_events(got, reference_wiring(samples, fault_s, end)), got


def flicker_reports(make: Callable[[float], Supervisor], case: Case) -> Timed:
    fault_s, samples, end = case
    return replay_wiring(make(fault_s), samples, end)


@SOME
@given(flicker())
def test_flicker_shorter_than_fault_s_is_not_reported(case: Case) -> None:
    assert flicker_reports(lambda f: SupervisedContact("door", f), case) == []


def test_twin_flicker_is_reported_without_the_fault_delay() -> None:
    def unfiltered(fault_s: float) -> Supervisor:
        return SupervisedContact("door", 0.0)

    case = find(flicker(), lambda c: bool(flicker_reports(unfiltered, c)), settings=TWIN)
    assert flicker_reports(lambda f: SupervisedContact("door", f), case) == []


FAULTS = [(False, False, "cut"), (True, True, "short")]


def check_fault_reported(detector: Supervisor, main: bool, check: bool, reason: str) -> None:
    """A healthy loop, then a fault from t=100: reported at 103 (fault_s=3, E3 says <= 10 s),
    then healthy again from t=200: restored at 203."""
    samples: Wiring = ((0.0, True, False), (100.0, main, check), (200.0, True, False))
    got = replay_wiring(detector, samples, 300.0)
    assert got == [(103.0, reason), (203.0, "restored")]


@pytest.mark.parametrize(("main", "check", "reason"), FAULTS)
def test_cut_and_short_reported_after_fault_s_then_restored(
    main: bool, check: bool, reason: str
) -> None:
    check_fault_reported(SupervisedContact("door", 3.0), main, check, reason)


@pytest.mark.parametrize(("main", "check", "reason"), FAULTS)
def test_twin_unsupervised_contact_misses_cut_and_short(
    main: bool, check: bool, reason: str
) -> None:
    with pytest.raises(AssertionError):
        check_fault_reported(NoSupervision(), main, check, reason)


def test_fault_present_at_first_reading_is_reported_fault_s_later() -> None:
    s = SupervisedContact("emergency_button", 3.0)
    assert s.deadline() is None and s.poll(50.0) == []
    assert s.update(False, False, 50.0) == []
    assert s.deadline() == 53.0
    assert s.poll(53.0) == [HardwareFault("emergency_button", "cut")]
    assert s.faulty


def test_fault_changing_kind_is_reported_again() -> None:
    s = SupervisedContact("door", 1.0)
    s.update(True, True, 0.0)
    assert s.poll(1.0) == [HardwareFault("door", "short")]
    s.update(False, False, 2.0)
    assert s.poll(3.0) == [HardwareFault("door", "cut")]
    s.update(True, False, 4.0)
    assert s.update(False, False, 4.5) == []  # healthy too briefly to restore
    assert s.poll(10.0) == []
    assert s.faulty
