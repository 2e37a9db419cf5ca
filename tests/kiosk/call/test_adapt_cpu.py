"""The video ladder under the booth's own load, and the bitrate each level allows.

A booth that cannot encode in time steps video down like a lossy link does,
comes back slowly, backs off further when the bigger picture overloads it
again, and never touches audio (the policy has no audio to touch: its levels
are video only). A twin that ignores the CPU stays overloaded.
"""

from __future__ import annotations

import pytest

from kiosk.call.adapt import (
    AUDIO_SHARE,
    CPU_UP_AFTER,
    LEVELS,
    MIN_BITRATE,
    UP_AFTER,
    VideoPolicy,
    video_bitrate,
)
from kiosk.call.load import LoadMeter
from kiosk.call.tracks import Outgoing

# A booth whose encoder needs this many cores per level: full is too much for a budget of 1.
DEMAND = {"full": 1.4, "reduced": 0.45, "off": 0.05}


def run_booth(
    policy: VideoPolicy,
    seconds: int,
    demand: dict[str, float] = DEMAND,
    start: int = 0,
    loss: float = 0.0,
) -> list[tuple[int, str, float]]:
    """A simulated booth, one look a second: the cores it uses depend on the level it sends,
    a starved encoder makes late pictures, the link is clean. (second, level, cores) each look."""
    out = []
    for t in range(start, start + seconds):
        cores = demand[policy.current.name]
        late = 0.6 if cores > policy.cpu_budget else 0.0
        policy.observe(float(t), loss, 0.05, late=late, cpu=min(cores, 2.0))
        out.append((t, policy.current.name, cores))
    return out


def changes(trace: list[tuple[int, str, float]], before: str = "full") -> list[tuple[int, str]]:
    out = []
    for t, name, _ in trace:
        if name != before:
            out.append((t, name))
            before = name
    return out


def test_cpu_overload_steps_video_down_as_loss_would() -> None:
    policy = VideoPolicy(down_after=3.0, cpu_budget=1.0)
    trace = run_booth(policy, 20)
    assert changes(trace) == [(3, "reduced")]
    assert policy.cause == "cpu"
    assert all(cores <= 1.0 for t, _, cores in trace if t > 3)  # the booth keeps up from then on


def test_twin_ignoring_the_cpu_stays_overloaded() -> None:
    policy = VideoPolicy(down_after=3.0, cpu_budget=1.0, follow_cpu=False)
    trace = run_booth(policy, 60)
    assert changes(trace) == []
    assert all(cores > policy.cpu_budget for _, _, cores in trace)


@pytest.mark.parametrize("signal", ["late", "cpu"])
def test_either_signal_alone_is_an_overload(signal: str) -> None:
    policy = VideoPolicy(down_after=2.0, cpu_budget=1.0)
    seen = []
    for t in range(4):
        load = {"late": 0.5, "cpu": None} if signal == "late" else {"late": None, "cpu": 1.2}
        level = policy.observe(float(t), None, None, **load)  # no loss report: CPU news only
        if level is not None:
            seen.append((t, level.name))
    assert seen == [(2, "reduced")]


def test_recovery_waits_longer_after_cpu_and_backs_off_when_it_overloads_again() -> None:
    policy = VideoPolicy(down_after=3.0, up_after=10.0, cpu_budget=1.0, cpu_up_after=30.0)
    assert CPU_UP_AFTER > UP_AFTER  # slower than after loss
    trace = run_booth(policy, 200)
    # Down at 3; 30 s of headroom later (good from 4 on) it tries full again at 34, which
    # overloads from 35: down at 38, and the next try waits 60 s (good from 39), then 120 s.
    assert changes(trace) == [
        (3, "reduced"),
        (34, "full"),
        (38, "reduced"),
        (99, "full"),
        (103, "reduced"),
    ]
    trace = run_booth(policy, 400, start=200)
    assert changes(trace, "reduced") == [
        (224, "full"),
        (228, "reduced"),
        (469, "full"),
        (473, "reduced"),
    ]
    assert policy._cpu_wait == policy.cpu_up_max  # 240 s between tries from now on


def test_a_booth_that_copes_again_goes_back_up() -> None:
    policy = VideoPolicy(down_after=3.0, cpu_budget=1.0, cpu_up_after=30.0)
    run_booth(policy, 5)
    assert policy.current.name == "reduced"
    light = {"full": 0.5, "reduced": 0.3, "off": 0.05}  # say, another program on the Pi ended
    trace = run_booth(policy, 60, demand=light, start=5)
    assert changes(trace, "reduced") == [(34, "full")]


def test_some_headroom_is_needed_to_go_back_up() -> None:
    policy = VideoPolicy(down_after=1.0, cpu_budget=1.0, cpu_up_after=5.0)
    for t in range(2):
        policy.observe(float(t), 0.0, 0.05, cpu=1.5)
    assert policy.current.name == "reduced"
    for t in range(2, 60):
        policy.observe(float(t), 0.0, 0.05, cpu=0.9)  # under budget, but only just: stays
    assert policy.current.name == "reduced"


def test_loss_steps_down_even_when_the_cpu_is_idle_and_a_link_step_waits_as_before() -> None:
    policy = VideoPolicy(down_after=3.0, up_after=10.0, cpu_budget=1.0)
    trace = run_booth(policy, 5, demand={"full": 0.1, "reduced": 0.1, "off": 0.1}, loss=0.3)
    assert changes(trace) == [(3, "reduced")] and policy.cause == "link"
    trace = run_booth(policy, 20, demand={"full": 0.1, "reduced": 0.1, "off": 0.1}, start=5)
    assert changes(trace, "reduced") == [(15, "full")]


def test_audio_is_never_part_of_the_ladder() -> None:
    """Every level keeps the voice: the switchboard's sound does not depend on the video level."""
    out = Outgoing()
    policy = VideoPolicy(down_after=0.0, cpu_budget=1.0)
    for t in range(5):
        level = policy.observe(float(t), 0.5, 2.0, late=1.0, cpu=4.0)
        if level is not None:
            out.video = level
        assert out.sound
    assert out.video.off and not out.picture and out.sound


def test_reset_forgets_the_cpu_backoff() -> None:
    policy = VideoPolicy(down_after=3.0, cpu_budget=1.0, cpu_up_after=30.0)
    run_booth(policy, 50)
    policy.reset()
    assert policy.current is LEVELS[0] and policy.cause is None
    assert changes(run_booth(policy, 40)) == [(3, "reduced"), (34, "full"), (38, "reduced")]


# ---------------------------------------------------------------- bitrate


def test_each_level_caps_the_bitrate_and_the_far_side_estimate_lowers_it() -> None:
    full, reduced, off = LEVELS
    assert full.bitrate > reduced.bitrate > off.bitrate
    assert video_bitrate(full) == full.bitrate
    assert video_bitrate(reduced) == reduced.bitrate
    assert video_bitrate(full, remb=400_000) == 400_000 - AUDIO_SHARE
    assert video_bitrate(full, remb=5_000_000) == full.bitrate  # never over the level's cap
    assert video_bitrate(full, remb=10_000) == MIN_BITRATE
    assert video_bitrate(full, size=(1280, 720)) == 3 * full.bitrate
    assert video_bitrate(full, size=(320, 240)) == full.bitrate // 4


# ---------------------------------------------------------------- measuring


class Counting:
    def __init__(self) -> None:
        self.sent = 0
        self.late = 0


def test_the_load_meter_gives_late_pictures_per_sent_and_cores() -> None:
    clock = [0.0]
    cpu = [0.0]
    meter = LoadMeter(clock=lambda: clock[0], cpu_time=lambda: cpu[0])
    track = Counting()
    assert meter.sample(track).late is None  # a first look has nothing to compare with
    clock[0], cpu[0] = 1.0, 0.5
    track.sent, track.late = 20, 5
    load = meter.sample(track)
    assert load.late == 0.25 and load.cpu == 0.5
    clock[0], cpu[0] = 2.0, 2.0
    track.late = 9  # nothing sent, pictures dropped: as bad as it gets
    assert meter.sample(track).late == 1.0
    other = Counting()  # a new leg's track: counts start again
    assert meter.sample(other).late is None
