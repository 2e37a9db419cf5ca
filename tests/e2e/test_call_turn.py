"""A call that can only go through TURN: a real coturn, per-call credentials from the hub.

Three namespaces: the booth, the clinic (hub and the clinician's Chromium)
and a TURN host running Debian's coturn with the REST-API shared secret. The
booth and the clinic share a veth for the hub link, but UDP on it is
dropped, so no direct media path exists; each side reaches coturn over a
veth of its own (the clinic through a route to coturn's address, which the
TURN host does not forward any further). coturn relays to its own relay
address only, so the only working candidate pair is relay to relay.

The hub is ``clinic-hub serve --turn-url ... --turn-secret-file ...``: every
call gets credentials minted for it. The twin runs the same call with a hub
whose secret coturn does not share: its credentials are refused, there is no
relay, and no media flows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from tests.browser import require_chromium, sync_chromium_context
from tests.e2e.stack import (
    BOOTH_ID,
    BoothProcess,
    Console,
    HubProcess,
    Stack,
    booth_config,
    no_ipv6,
    prepare_hub,
    run_coturn,
    write_private,
)
from tests.netlab import NetLab, require_root

pytestmark = pytest.mark.root

NO_MEDIA_WATCH_S = 8.0
"""How long the twin watches for media that must not come (past the booth's 5 s stall)."""


@pytest.fixture(scope="module")
def turn_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_root()
    require_chromium()
    workdir = tmp_path_factory.mktemp("call-turn")
    with NetLab() as lab, sync_playwright() as playwright:
        booth_ns, clinic_ns, turn_ns = (
            lab.namespace("booth"),
            lab.namespace("clinic"),
            lab.namespace("turn"),
        )
        no_ipv6(booth_ns, clinic_ns, turn_ns)
        direct = lab.veth(booth_ns, clinic_ns)  # the hub link; its UDP is dropped below
        booth_turn = lab.veth(booth_ns, turn_ns, default_route=False)
        clinic_turn = lab.veth(clinic_ns, turn_ns, default_route=False)
        turn_ip = booth_turn.b.ip
        # The clinic reaches coturn's address through its own veth to the TURN host, and
        # the TURN host answers each side's addresses back the way they came (it routes
        # nothing else, and forwards nothing at all).
        clinic_ns.ip("route", "add", f"{turn_ip}/32", "via", clinic_turn.b.ip)
        turn_ns.ip("route", "add", f"{direct.a.ip}/32", "via", booth_turn.a.ip)
        turn_ns.ip("route", "add", f"{direct.b.ip}/32", "via", clinic_turn.a.ip)
        direct.cut(proto="udp")

        with run_coturn(turn_ns, turn_ip, workdir) as coturn:
            files = prepare_hub(workdir / "hub")
            hub = HubProcess(
                clinic_ns,
                files,
                workdir / "hub.log",
                turn_urls=[coturn.url],
                turn_secret_file=coturn.secret_file,
            )
            hubs = [hub]  # a test may restart the hub: all of them are stopped at the end
            try:
                config = booth_config(
                    workdir / "booth.toml",
                    hub_url=f"wss://{direct.b.ip}:{hub.port}/booth",
                    fingerprint=files.fingerprint,
                    credential=files.credential,
                )
                booth = BoothProcess(booth_ns, config, workdir / "booth.log")
                try:
                    with sync_chromium_context(playwright, clinic_ns) as context:
                        page = context.pages[0] if context.pages else context.new_page()
                        console = Console(page, hub.base)
                        console.sign_in()
                        stack = Stack(lab, direct, hub, booth, console, files, workdir)
                        stack.extra.update(coturn=coturn, turn_ip=turn_ip, hubs=hubs)
                        stack.booth_online()
                        yield stack
                finally:
                    booth.stop()
            finally:
                for each in hubs:
                    each.stop()


def test_a_call_through_coturn_relay_to_relay_with_per_call_credentials(
    turn_stack: Stack,
) -> None:
    stack = turn_stack
    console = stack.console
    coturn = stack.extra["coturn"]
    mark, call_id = stack.start_call()

    # The hub minted TURN credentials for this call: the console uses exactly those.
    servers = console.value("t.call.iceServers")
    assert len(servers) == 1 and servers[0]["urls"] == [coturn.url], servers
    expiry, _, user = servers[0]["username"].partition(":")
    assert expiry.isdigit() and int(expiry) > time.time() and user.startswith("console-")
    assert servers[0]["credential"]

    stats, call = stack.media_both_ways(timeout=25)
    assert stats["framesDecoded"] > 0 and stats["audioBytesReceived"] > 0
    assert call["call_id"] == call_id and call["video_frames"] > 0

    pair = console.selected_pair()
    assert pair is not None, "no selected candidate pair"
    assert (pair["local"], pair["remote"]) == ("relay", "relay"), pair
    assert pair["localAddress"] == pair["remoteAddress"] == stack.extra["turn_ip"], pair
    assert pair["relayProtocol"] == "udp", pair

    stack.end_from_booth(mark)
    turn_log = (stack.workdir / "turnserver.log").read_text(errors="replace")
    assert BOOTH_ID in turn_log  # coturn saw the booth's per-call username


def test_twin_credentials_coturn_does_not_accept_carry_no_media(turn_stack: Stack) -> None:
    """The same call with a hub whose TURN secret is not coturn's: no relay, no media."""
    stack = turn_stack
    booth, console = stack.booth, stack.console
    wrong = stack.workdir / "wrong-turn-secret"
    write_private(wrong, "not-the-secret-coturn-has-0123456789\n")
    stack.hub.stop()
    stack.hub = HubProcess(
        stack.clinic_ns,
        stack.files,
        stack.workdir / "hub-wrong-secret.log",
        turn_urls=[stack.extra["coturn"].url],
        turn_secret_file=wrong,
    )
    stack.extra["hubs"].append(stack.hub)
    console.page.reload()
    console.until("t.state === 'lobby'")
    stack.booth_online(timeout=30)

    mark, call_id = stack.start_call()
    assert console.value("t.call.iceServers.length") == 1  # credentials, but wrong ones
    before = booth.call()
    time.sleep(NO_MEDIA_WATCH_S)
    stats = console.stats()
    assert stats["framesDecoded"] == 0 and stats["audioBytesReceived"] == 0, stats
    assert console.selected_pair() is None
    after = booth.call()
    assert after["call_id"] == call_id
    assert after["status"] in ("connecting", "stalled"), after
    assert after["video_frames"] == before["video_frames"], (before, after)
    assert booth.status()["state"] == "in_call"  # the visit waits, within the network grace

    end = booth.send("touch end_call")
    assert console.until("t.state === 'lobby' && t.lastEnded") == "resident_ended"
    booth.wait_state("attract", since=end, timeout=10)
