"""A call over a bad network: the booth's link cut and restored, blipped, lossy and thin.

Same real parts as ``test_call_visit.py`` (booth process, hub process,
console in Chromium), with the booth's side of the veth impaired by
``tests/netlab.py``: an nftables cut of everything (TCP too: the hub link
goes silent with the media), random loss, a tbf rate limit.

Each fault has a twin where it goes the other way: a cut that is restored
keeps the visit, the same cut left in place ends it after
``network_grace_seconds``; audio bytes that keep growing on a lossy link
stop growing when the link is cut.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from tests.browser import require_chromium
from tests.e2e.stack import BOOTH_ID, Stack, clinic_stack, hub_link_reset
from tests.netlab import require_root

pytestmark = pytest.mark.root

NETWORK_GRACE_S = 10.0
"""The booth's ``network_grace_seconds`` here: the shortest the configuration allows."""
VISIT_STATES = ("in_call", "privacy_pause")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_root()
    require_chromium()
    with (
        sync_playwright() as playwright,
        clinic_stack(
            tmp_path_factory.mktemp("call-network"),
            playwright,
            booth_options={"network_grace_seconds": NETWORK_GRACE_S},
        ) as stack,
    ):
        yield stack


@pytest.fixture(autouse=True)
def tidy(stack: Stack) -> Iterator[None]:
    yield
    stack.link.restore()
    for side in (stack.link.a, stack.link.b):
        side.ns.clear_impairments()
    stack.tidy()


def frames_flow(stack: Stack, timeout: float = 10.0) -> None:
    """New media on both sides from now on: the console decodes more, the booth receives more."""
    console_before = stack.console.stats()
    booth_before = stack.booth.call()
    stack.console.until_stats(
        lambda s: (
            s["framesDecoded"] > console_before["framesDecoded"] + 5
            and s["audioBytesReceived"] > console_before["audioBytesReceived"]
        ),
        timeout,
        "new frames from the booth",
    )
    stack.booth.until_call(
        lambda c: (
            c["video_frames"] > booth_before["video_frames"] + 5
            and c["audio_frames"] > booth_before["audio_frames"]
            and c["remote_video"]
        ),
        timeout,
        "new frames from the clinician",
    )


def test_a_cut_link_that_comes_back_keeps_the_call_and_a_blip_changes_nothing(
    stack: Stack,
) -> None:
    booth, console, link = stack.booth, stack.console, stack.link
    mark, call_id = stack.start_call()
    stack.media_both_ways()
    in_call = len(booth.lines)

    # A blip shorter than the booth's 5 s stall threshold: nobody notices.
    link.cut()
    time.sleep(2.0)
    link.restore()
    frames_flow(stack)
    after_blip = booth.call()
    assert (after_blip["status"], after_blip["call_id"]) == ("connected", call_id)
    assert after_blip["offers"] == 1  # not even a re-offer
    assert booth.states(in_call) == []
    assert console.value("t.state") == "in_call" and console.value("t.rebuilds") == 0

    # Everything cut (the hub link too) for 7 s: the booth notices, and keeps re-offering.
    link.cut()
    cut_at = time.monotonic()
    stalled = booth.until_call(lambda c: c["status"] == "stalled", 10, "a stall")
    assert stalled["call_id"] == call_id
    time.sleep(max(0.0, 7.0 - (time.monotonic() - cut_at)))
    link.restore()
    restored_at = time.monotonic()

    back = booth.until_call(
        lambda c: c["status"] == "connected" and c["call_id"] == call_id, 15, "the call back"
    )
    took = time.monotonic() - restored_at
    assert back["offers"] > 1  # a new peer connection, offered through the hub
    frames_flow(stack, timeout=15)
    assert console.value("t.state") == "in_call"
    assert console.value("t.call.call_id") == call_id
    assert console.value("t.rebuilds") >= 1  # the console took the booth's re-offer
    # The resident never left the visit: no wrap-up, no wipe, no new visit.
    assert set(booth.states(in_call)) <= set(VISIT_STATES), booth.states(in_call)
    status = booth.status()
    assert status["state"] == "in_call" and status["network_up"] is True, status
    print(f"call connected again {took:.1f} s after the link came back")

    stack.end_from_booth(mark)


def test_a_cut_that_lasts_ends_the_visit_after_the_network_grace(stack: Stack) -> None:
    """The twin of the cut above: left cut, the booth gives up and wipes the visit."""
    booth, console, link = stack.booth, stack.console, stack.link
    _, call_id = stack.start_call()
    stack.media_both_ways()
    in_call = len(booth.lines)

    link.cut()
    cut_at = time.monotonic()
    lost = booth.wait_for(
        lambda m: m.get("effect") == "start_timer" and m.get("detail") == "network_grace",
        since=in_call,
        timeout=10,
        what="the network grace starting",
    )
    wrap = booth.wait_state("wrap_up", since=in_call, timeout=NETWORK_GRACE_S + 5)
    assert wrap.at - lost.at == pytest.approx(NETWORK_GRACE_S, abs=1.5)
    assert booth.status()["message"] == "connection_lost"
    booth.wait_effect("wipe", since=in_call, timeout=10)  # wiped: nothing of the visit is left
    print(f"visit ended {wrap.at - cut_at:.1f} s after the cut")
    assert console.value("t.call && t.call.call_id") == call_id  # the clinician is still waiting

    # The link comes back: the console learns the call is over, the booth is ready again.
    link.restore()
    ended = console.until("t.state === 'lobby' && t.lastEnded", timeout=40)
    assert ended in ("resident_ended", "booth_disconnected"), ended
    stack.booth_online(timeout=40)
    # Not left out of service: the call's dead media no longer counts against the booth.
    status = booth.status()
    assert (status["state"], status["network_up"]) == ("attract", True), status
    quiet = booth.call()
    assert (quiet["status"], quiet["call_id"]) == ("idle", None), quiet


def test_audio_keeps_flowing_over_a_lossy_narrow_link(stack: Stack) -> None:
    booth, console, link = stack.booth, stack.console, stack.link
    mark, call_id = stack.start_call()
    stack.media_both_ways()
    in_call = len(booth.lines)

    booth_side, clinic_side = link.a, link.b
    # 15 % of everything lost each way, and the booth's uplink squeezed to 300 kbit/s.
    booth_side.ns.loss(0.15, proto=None, dev=booth_side.dev)
    clinic_side.ns.loss(0.15, proto=None, dev=clinic_side.dev)
    booth_side.ns.rate_limit(booth_side.dev, "300kbit", burst="8kb", latency="100ms")
    time.sleep(2.0)

    samples = []
    for _ in range(5):
        samples.append(console.stats()["audioBytesReceived"])
        time.sleep(1.5)
    samples.append(console.stats()["audioBytesReceived"])
    steps = [b - a for a, b in itertools.pairwise(samples)]
    assert all(step > 0 for step in steps), f"audio stalled on the lossy link: {samples}"
    assert booth.call()["call_id"] == call_id
    assert console.value("t.state") == "in_call"
    assert set(booth.states(in_call)) <= set(VISIT_STATES), booth.states(in_call)

    # The twin: the same measurement sees audio stop when nothing gets through.
    link.cut()
    time.sleep(0.5)
    before = console.stats()["audioBytesReceived"]
    time.sleep(2.0)
    assert console.stats()["audioBytesReceived"] == before, "audio 'flowed' over a cut link"
    link.restore()
    console.until_stats(
        lambda s: s["audioBytesReceived"] > before, 10, "audio again on the lossy link"
    )
    stack.end_from_booth(mark)


def test_a_call_ended_while_the_hub_link_is_down_is_not_left_open_at_the_hub(
    stack: Stack,
) -> None:
    """The resident hangs up just as the hub link breaks: the booth's end_call is lost.

    The hub, which heard nothing, keeps the call and gives it back to the booth
    when it reconnects (``call_started``, as for any booth back within the
    grace). The booth must end it there, not take it up: else the clinician
    waits in a dead call and the hub refuses the booth's next resident (busy).
    """
    booth, console = stack.booth, stack.console
    mark, call_id = stack.start_call()
    stack.media_both_ways()

    with hub_link_reset(stack.booth_ns):
        end = booth.send("touch end_call")
        booth.wait_state("wrap_up", since=end)
        booth.wait_for(
            lambda m: m["type"] == "state" and m["state"] == "out_of_service",
            since=end,
            timeout=10,
            what="out of service without its hub",
        )
        assert "booth: lost" in booth.log_text()
        time.sleep(1.0)
        assert console.value("t.state") == "in_call"  # the hub still has the call
    # The link is back: the hub gives the call back, the booth ends it for good.
    ended = console.until("t.state === 'lobby' && t.lastEnded", timeout=20)
    assert ended == "resident_ended"
    assert f"call {call_id}: already ended here" in booth.log_text()
    booth.wait_state("attract", since=end, timeout=20)
    quiet = booth.call()
    assert (quiet["status"], quiet["call_id"]) == ("idle", None), quiet

    # The next resident gets a place in the queue (not "busy": the hub has no call for us).
    stack.booth_online()
    again = booth.walk_to_waiting()
    console.until(f"t.snapshot.queue.some((q) => q.booth_id === '{BOOTH_ID}')", timeout=10)
    assert "hub error busy" not in booth.log_text()
    booth.send("touch cancel")
    booth.wait_state("attract", since=again, timeout=10)
