"""When dead media becomes "network lost", stepped by hand: no clock, no network."""

from __future__ import annotations

from kiosk.call.stall import RETRY_EVERY, STALL_AFTER, StallWatch, Verdict


def ticks(
    watch: StallWatch, start: float, end: float, step: float = 0.25
) -> list[tuple[float, Verdict]]:
    out = []
    t = start
    while t <= end + 1e-9:
        verdict = watch.tick(t)
        if verdict is not None:
            out.append((round(t, 2), verdict))
        t += step
    return out


def test_the_defaults_are_the_documented_ones() -> None:
    assert STALL_AFTER == 5.0  # docs/calls.md: the booth notices within 5 s
    assert RETRY_EVERY < 5.0  # "every few seconds"


def test_nothing_happens_before_a_call_is_watched() -> None:
    watch = StallWatch()
    assert ticks(watch, 0.0, 30.0) == []


def test_silence_past_the_limit_is_lost_once_then_retried_every_few_seconds() -> None:
    watch = StallWatch(5.0, 4.0)
    watch.expect(0.0)
    watch.media(1.0)
    assert ticks(watch, 1.0, 16.0) == [
        (6.0, Verdict.LOST),
        (10.0, Verdict.RETRY),
        (14.0, Verdict.RETRY),
    ]
    assert watch.stalled


def test_a_blip_shorter_than_the_limit_changes_nothing() -> None:
    watch = StallWatch(5.0, 4.0)
    watch.expect(0.0)
    watch.media(1.0)
    assert ticks(watch, 1.0, 3.9) == []
    assert watch.media(3.9) is False  # 2.9 s of silence: not a stall, nothing to restore
    assert ticks(watch, 3.9, 8.8) == []
    assert not watch.stalled


def test_twin_with_no_patience_the_same_blip_is_a_stall() -> None:
    watch = StallWatch(1.0, 4.0)
    watch.expect(0.0)
    watch.media(1.0)
    assert ticks(watch, 1.0, 3.9)[0] == (2.0, Verdict.LOST)


def test_media_after_a_stall_restores_once() -> None:
    watch = StallWatch(5.0, 4.0)
    watch.expect(0.0)
    assert ticks(watch, 0.0, 5.0) == [(5.0, Verdict.LOST)]
    assert watch.media(7.0) is True
    assert watch.media(7.02) is False
    assert not watch.stalled and watch.flowing(7.5)
    assert not watch.flowing(9.0)  # 2 s without media is not "flowing fine"


def test_a_new_offer_while_stalled_does_not_reset_the_stall() -> None:
    watch = StallWatch(5.0, 4.0)
    watch.expect(0.0)
    ticks(watch, 0.0, 5.0)
    watch.expect(5.1)  # the re-offer
    assert watch.stalled
    assert ticks(watch, 5.25, 9.0) == [(9.0, Verdict.RETRY)]


def test_a_new_offer_in_a_healthy_call_gets_its_own_full_wait() -> None:
    watch = StallWatch(5.0, 4.0)
    watch.expect(0.0)
    watch.media(4.0)
    watch.expect(8.0)  # call_started again: new leg
    assert ticks(watch, 8.0, 12.9) == []
    assert ticks(watch, 13.0, 13.0) == [(13.0, Verdict.LOST)]


def test_a_failed_connection_is_a_stall_at_once() -> None:
    watch = StallWatch(5.0, 4.0)
    assert watch.failed(0.0) is False  # no call watched: nothing to fail
    watch.expect(0.0)
    assert watch.failed(0.5) is True
    assert watch.failed(0.6) is False  # told once
    assert ticks(watch, 0.75, 4.5) == [(4.5, Verdict.RETRY)]


def test_stop_forgets_the_call() -> None:
    watch = StallWatch()
    watch.expect(0.0)
    watch.stop()
    assert ticks(watch, 0.0, 20.0) == [] and not watch.stalled
