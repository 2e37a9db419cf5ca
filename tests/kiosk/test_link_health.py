"""The visit hears of a lost link once, and of its return only when hub and media both work."""

from __future__ import annotations

from kiosk import session
from kiosk.link_health import LinkHealth


def names(events: list[session.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_either_witness_failing_is_one_loss_and_both_must_recover() -> None:
    seen: list[session.Event] = []
    health = LinkHealth(seen.append)
    health.from_media(session.NetworkLost())
    health.from_hub(session.NetworkLost())
    assert names(seen) == ["NetworkLost"]
    health.from_hub(session.NetworkRestored())
    assert names(seen) == ["NetworkLost"], "media is still down"
    health.from_media(session.NetworkRestored())
    assert names(seen) == ["NetworkLost", "NetworkRestored"]


def test_repeated_reports_are_not_repeated_events() -> None:
    seen: list[session.Event] = []
    health = LinkHealth(seen.append)
    health.from_hub(session.NetworkRestored())
    health.from_hub(session.NetworkLost())
    health.from_hub(session.NetworkLost())
    assert names(seen) == ["NetworkLost"]


def test_a_call_ending_forgets_missing_media_after_the_end_is_told() -> None:
    seen: list[session.Event] = []
    health = LinkHealth(seen.append)
    health.from_media(session.NetworkLost())
    health.from_media(session.CallEnded())
    assert names(seen) == ["NetworkLost", "CallEnded", "NetworkRestored"]
    assert health.up


def test_other_events_pass_through_untouched() -> None:
    seen: list[session.Event] = []
    health = LinkHealth(seen.append)
    event = session.CodeRefused()
    health.from_hub(event)
    assert seen == [event]
