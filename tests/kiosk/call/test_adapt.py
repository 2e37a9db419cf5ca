"""The video ladder under loss reports: quick down, slow up, audio never in it."""

from __future__ import annotations

from kiosk.call.adapt import DOWN_AFTER, LEVELS, UP_AFTER, VideoPolicy


def feed(
    policy: VideoPolicy, start: float, end: float, loss: float | None, rtt: float | None = 0.05
) -> list[tuple[float, str]]:
    """One report a second from ``start`` to ``end``; the changes it made."""
    out = []
    t = start
    while t <= end:
        level = policy.observe(t, loss, rtt)
        if level is not None:
            out.append((t, level.name))
        t += 1.0
    return out


def test_the_ladder_goes_from_full_to_reduced_to_off() -> None:
    assert [level.name for level in LEVELS] == ["full", "reduced", "off"]
    assert LEVELS[1].scale == 0.5 and LEVELS[1].fps < LEVELS[0].fps
    assert LEVELS[2].off and not LEVELS[0].off
    assert DOWN_AFTER < UP_AFTER  # down quickly, up slowly: no flapping


def test_sustained_loss_steps_down_one_level_per_run_and_stops_at_off() -> None:
    policy = VideoPolicy(down_after=3.0)
    assert feed(policy, 0.0, 20.0, loss=0.2) == [(3.0, "reduced"), (6.0, "off")]
    assert policy.current.off


def test_a_clean_link_steps_back_up_slowly() -> None:
    policy = VideoPolicy(down_after=3.0, up_after=10.0)
    feed(policy, 0.0, 6.0, loss=0.2)
    assert feed(policy, 7.0, 40.0, loss=0.0) == [(17.0, "reduced"), (27.0, "full")]


def test_a_single_bad_report_changes_nothing() -> None:
    policy = VideoPolicy(down_after=3.0)
    assert feed(policy, 0.0, 0.0, loss=0.5) == []
    assert feed(policy, 1.0, 10.0, loss=0.0) == []
    assert policy.current is LEVELS[0]


def test_twin_without_waiting_for_sustained_loss_one_bad_report_steps_down() -> None:
    policy = VideoPolicy(down_after=0.0)
    assert feed(policy, 0.0, 0.0, loss=0.5) == [(0.0, "reduced")]


def test_middling_loss_holds_the_level_and_restarts_both_counts() -> None:
    policy = VideoPolicy(down_after=3.0, up_after=10.0)
    feed(policy, 0.0, 3.0, loss=0.2)
    assert policy.current.name == "reduced"
    changes = feed(policy, 4.0, 8.0, loss=0.2)  # bad again...
    changes += feed(policy, 9.0, 9.0, loss=0.05)  # ... then between good and bad
    changes += feed(policy, 10.0, 12.0, loss=0.2)  # the run of bad starts again
    assert changes == [(6.0, "off")]
    policy = VideoPolicy(down_after=3.0, up_after=10.0)
    feed(policy, 0.0, 3.0, loss=0.2)
    changes = feed(policy, 4.0, 12.0, loss=0.0) + feed(policy, 13.0, 13.0, loss=0.05)
    changes += feed(policy, 14.0, 30.0, loss=0.0)  # ten good seconds from 14 on
    assert changes == [(24.0, "full")]


def test_no_fresh_report_is_no_news() -> None:
    policy = VideoPolicy(down_after=3.0)
    policy.observe(0.0, 0.2, 0.05)
    policy.observe(1.0, None, None)  # no report came this second
    policy.observe(2.0, 0.2, 0.05)
    assert policy.observe(3.0, 0.2, 0.05) is LEVELS[1]


def test_a_long_round_trip_is_bad_even_without_loss() -> None:
    policy = VideoPolicy(down_after=3.0, bad_rtt=1.0)
    assert feed(policy, 0.0, 3.0, loss=0.0, rtt=1.5) == [(3.0, "reduced")]
    assert feed(policy, 4.0, 30.0, loss=0.0, rtt=0.7) == []  # not good either: stays put


def test_reset_starts_a_new_call_at_the_top() -> None:
    policy = VideoPolicy(down_after=1.0)
    feed(policy, 0.0, 5.0, loss=0.5)
    policy.reset()
    assert policy.current is LEVELS[0]
