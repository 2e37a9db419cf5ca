"""The console page in a real (headless) Chromium against a real hub on loopback.

A clinician signs in through the form, sees a booth (a small Python client
speaking hello/join_queue) wait, answers it, gets the call; an emergency
alert from the booth shows its street address and sounds until someone
clicks Acknowledge. Chromium is Debian's (``/usr/bin/chromium``), driven by
Playwright's Python package; nothing is downloaded and nothing leaves
127.0.0.1. Fake camera and microphone stand in for the clinician's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clinic.protocol import (
    Alert,
    AlertAck,
    AlertKind,
    AlertStatus,
    Answer,
    CallEnded,
    CallEvent,
    CallStarted,
    CallState,
    EndCall,
    EndReason,
    Offer,
    Queued,
    Site,
    Snapshot,
    new_id,
)
from tests.clinic.hubtest import (
    PASSWORD,
    Db,
    Peer,
    Server,
    Tls,
    eventually,
    running,
)

async_api = pytest.importorskip("playwright.async_api")

from tests.browser import DISABLED_FEATURES  # noqa: E402 - after the playwright check

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    # Chromium keeps only the last --disable-features, and Playwright passes its own list
    # first: so this repeats Playwright 1.65.2's list, then adds ours.
    "--disable-features=" + ",".join(DISABLED_FEATURES),
    "--ignore-certificate-errors",  # the hub's self-signed dev certificate
    "--autoplay-policy=no-user-gesture-required",  # the alarm may sound before any click
]
TIMEOUT_MS = 10_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


class Browser:
    """One page of the console, signed in, with helpers to wait on ``window.consoleTest``."""

    def __init__(self, page: Any, server: Server) -> None:
        self.page = page
        self.server = server
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def until(self, expression: str) -> Any:
        """Wait until ``expression`` (about ``t``, the page's consoleTest) is truthy; return it."""
        handle = await self.page.wait_for_function(
            f"() => {{ const t = window.consoleTest; return t && ({expression}); }}",
            timeout=TIMEOUT_MS,
        )
        return await handle.json_value()

    async def value(self, expression: str) -> Any:
        return await self.page.evaluate(
            f"(() => {{ const t = window.consoleTest; {expression} }})()"
        )

    def testid(self, name: str) -> Any:
        return self.page.locator(f'[data-testid="{name}"]')


@contextlib.asynccontextmanager
async def signed_in(server: Server) -> AsyncIterator[Browser]:
    """A fresh Chromium, signed in through the form, showing the console."""
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            context = await browser.new_context(ignore_https_errors=True)
            page = await context.new_page()
            await page.goto(f"{server.base}/")
            assert page.url == f"{server.base}/login"  # sent to sign in first
            await page.fill('[data-testid="login-username"]', "a.rivera")
            await page.fill('[data-testid="login-password"]', PASSWORD)
            await page.click('[data-testid="login-submit"]')
            await page.wait_for_url(f"{server.base}/", timeout=TIMEOUT_MS)
            console = Browser(page, server)
            await console.until("t.state === 'lobby'")
            yield console
            assert console.errors == []
        finally:
            await browser.close()


def alert() -> Alert:
    return Alert(
        id=new_id(),
        alert_id="emg-browser-1",
        booth_id="booth-1",
        kind=AlertKind.EMERGENCY,
        raised_at=datetime.now(UTC).replace(microsecond=0),
        site=Site(name="from the booth", street_address="from the booth", room="from the booth"),
    )


def test_sign_in_answer_a_booth_and_acknowledge_an_alert(db: Db, tls: Tls) -> None:
    async def main() -> None:
        async with running(db, tls, clock=time.time) as server, signed_in(server) as page:
            await scenario(server, page)

    async def scenario(server: Server, page: Browser) -> None:
        assert await page.testid("connection").text_content() == "Connected to the hub."

        # A booth comes online and waits.
        booth = await server.waiting_booth(audio_only=False)
        row = page.page.locator('[data-testid="queue-row"][data-booth-id="booth-1"]')
        await row.wait_for(timeout=TIMEOUT_MS)
        assert await row.locator('[data-testid="queue-booth"]').text_content() == (
            "Riverside booth"
        )
        status = page.page.locator(
            '[data-testid="booth-row"][data-booth-id="booth-1"] [data-testid="booth-status"]'
        )
        assert await status.text_content() == "Online, idle"
        wait = row.locator('[data-testid="wait"]')
        first = await wait.text_content()
        assert first is not None and first.startswith("0:0")
        await page.until(
            f"document.querySelector('[data-testid=\"wait\"]').textContent !== '{first}'"
        )  # the wait time counts up every second

        # Answer: the hub starts the call for both.
        await row.locator('[data-testid="answer"]').click()
        started = await booth.expect(CallStarted)
        call = await page.until("t.state === 'in_call' && t.pc !== null && t.call")
        assert call["call_id"] == started.call_id and call["booth_id"] == "booth-1"
        assert call["iceServers"] == []  # the hub gave none: no public STUN either
        assert await page.testid("call").is_visible()
        assert await page.testid("lobby").is_hidden()
        assert await page.until("t.media !== 'none' && t.media") == "camera and microphone"
        config = await page.value("return t.pc.getConfiguration().iceServers;")
        assert config == []

        # Door and emergency from the booth, through the hub.
        for word, testid, shown in (
            (CallEvent.DOOR_OPEN, "door-indicator", "Door: OPEN. The booth's camera and"),
            (CallEvent.EMERGENCY, "emergency-indicator", "EMERGENCY button pressed"),
        ):
            await booth.send(CallState(id=new_id(), call_id=started.call_id, event=word))
            await page.until(f"t.lastCallEvent === '{word.value}'")
            assert (await page.testid(testid).text_content() or "").startswith(shown)

        # Mute goes to the booth as call_state.
        await page.testid("mute").click()
        muted = await booth.expect(CallState)
        assert (muted.call_id, muted.event) == (started.call_id, CallEvent.MUTED)
        assert await page.testid("mute").text_content() == "Unmute"

        # An emergency alert: address from the hub's record, an alarm until acknowledged.
        await booth.send(alert())
        assert (await booth.expect(AlertAck)).status is AlertStatus.RECEIVED
        await page.until("t.alerts.length === 1")
        item = page.page.locator('[data-testid="alert"]')
        assert await item.locator('[data-testid="alert-site"]').text_content() == (
            "Riverside Library"
        )
        assert await item.locator('[data-testid="alert-address"]').text_content() == (
            "1 Main St, Springfield"
        )
        assert await item.locator('[data-testid="alert-room"]').text_content() == "Room 2"
        assert await page.testid("alarm-banner").is_visible()
        assert "1 unacknowledged alert" in (await page.testid("alarm-text").text_content() or "")
        alarm = await page.until("t.alarm.sounding && t.alarm.beeps >= 2 && t.alarm")
        assert alarm["audible"] is True  # the oscillator really plays, not just a flag
        await asyncio.sleep(0.5)
        assert (await page.value("return t.alarm;"))["sounding"] is True  # until acknowledged

        await item.locator('[data-testid="ack"]').click()
        ack = await booth.expect(AlertAck)
        assert (ack.alert_id, ack.status) == ("emg-browser-1", AlertStatus.ACKNOWLEDGED)
        await page.until("!t.alarm.sounding && t.alerts.length === 0")
        beeps = (await page.value("return t.alarm;"))["beeps"]
        await asyncio.sleep(1.5)
        assert (await page.value("return t.alarm;"))["beeps"] == beeps  # silent now
        assert await page.testid("alarm-banner").is_hidden()
        assert db.store.unacked_alerts() == []

        # End the call from the page.
        await page.testid("end-call").click()
        ended = await booth.expect(CallEnded)
        assert (ended.call_id, ended.reason) == (started.call_id, EndReason.CLINICIAN_ENDED)
        assert await page.until("t.state === 'lobby' && t.lastEnded") == "clinician_ended"
        assert await page.testid("notice").text_content() == "You ended the call."
        assert await page.testid("lobby").is_visible()

        # Sign out (the form posts with Origin: null; Sec-Fetch-Site vouches for it).
        await page.testid("logout").click()
        await page.page.wait_for_url(f"{server.base}/login", timeout=TIMEOUT_MS)
        await eventually(lambda: server.hub.consoles == [])
        await page.page.goto(f"{server.base}/")
        assert page.page.url == f"{server.base}/login"  # the session is over

    asyncio.run(main())


# ------------------------------------------------------- media, booth to page


class AiortcBooth:
    """The booth's side of the media: aiortc offering synthetic video and audio, plus
    the ``state`` data channel, through the hub's signaling (one peer connection per offer)."""

    def __init__(self, peer: Peer, call_id: str) -> None:
        self.peer = peer
        self.call_id = call_id
        self.pcs: list[Any] = []
        self.heard: list[str] = []  # words from the console on the data channel
        self.channel: Any = None

    async def offer(self) -> None:
        """A new peer connection (as after a reconnect), offered and answered."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN server
        self.pcs.append(pc)
        pc.addTrack(VideoStreamTrack())
        pc.addTrack(AudioStreamTrack())
        channel = pc.createDataChannel("state")
        self.channel = channel

        @channel.on("message")
        def heard(data: str) -> None:
            self.heard.append(json.loads(data)["event"])

        await pc.setLocalDescription(await pc.createOffer())  # gathers every candidate
        await self.peer.send(Offer(id=new_id(), call_id=self.call_id, sdp=pc.localDescription.sdp))
        answer = await self.peer.expect(Answer, skip=(Snapshot, Queued, CallState))
        assert answer.call_id == self.call_id
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

    async def channel_open(self) -> None:
        for _ in range(100):
            if self.channel.readyState == "open":
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the state channel did not open")

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()


async def receiving(page: Browser, more_than: int = 0) -> dict[str, Any]:
    """The page's inbound media once video frames (beyond ``more_than``) and audio arrive."""
    stats: dict[str, Any] = {}
    for _ in range(100):
        stats = await page.page.evaluate("() => window.consoleTest.stats()")
        if stats["framesDecoded"] > more_than and stats["audioBytesReceived"] > 0:
            return stats
        await asyncio.sleep(0.1)
    raise AssertionError(f"no media on the page: {stats}")


def test_booth_media_reaches_the_page_and_a_reconnect_rebuilds_the_call(
    db: Db, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aioice.ice

    # aioice leaves out 127.0.0.1 on its own; here it is the only address to offer.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])

    async def main() -> None:
        async with running(db, tls, clock=time.time) as server, signed_in(server) as page:
            await scenario(server, page)

    async def scenario(server: Server, page: Browser) -> None:
        booth = await server.waiting_booth()
        answer = page.page.locator('[data-testid="queue-row"] [data-testid="answer"]')
        await answer.click()
        started = await booth.expect(CallStarted)
        await page.until("t.state === 'in_call' && t.media === 'camera and microphone'")
        media = AiortcBooth(booth, started.call_id)
        try:
            await media.offer()
            stats = await receiving(page)
            assert stats["codec"] in ("video/VP8", "video/H264")
            assert await page.until("t.answersSent === 1 && t.dataChannel === 'open'")

            # The state channel, both ways.
            await media.channel_open()
            media.channel.send(json.dumps({"event": "door_open"}))
            await page.until("t.door === 'open' && t.lastCallEvent === 'door_open'")
            await page.testid("mute").click()
            for _ in range(50):
                if "muted" in media.heard:
                    break
                await asyncio.sleep(0.05)
            assert media.heard == ["muted"]
            assert (await booth.expect(CallState)).event is CallEvent.MUTED  # and via the hub

            # The booth's hub link drops: the page says so, and keeps the call.
            await booth.ws.close()
            await page.until("t.lastCallEvent === 'booth_offline'")
            status = await page.testid("call-status").text_content()
            assert status == "The booth's connection dropped; waiting for it to come back."
            assert await page.value("return t.state;") == "in_call"

            # It comes back within the grace: same call, a new offer, a new peer connection.
            again, _ = await server.booth()
            assert (await again.expect(CallStarted)).call_id == started.call_id
            await page.until("t.lastCallEvent === 'booth_online'")
            media.peer = again
            await media.offer()
            await page.until("t.rebuilds === 1 && t.answersSent === 2")
            await receiving(page)  # media flows on the rebuilt connection
            await media.channel_open()
            for _ in range(50):  # the page tells the new channel it is still muted
                if media.heard == ["muted", "muted"]:
                    break
                await asyncio.sleep(0.05)
            assert media.heard == ["muted", "muted"]

            # The resident hangs up.
            await again.send(EndCall(id=new_id(), call_id=started.call_id))
            assert (await again.expect(CallEnded)).reason is EndReason.RESIDENT_ENDED
            assert await page.until("t.state === 'lobby' && t.lastEnded") == "resident_ended"
            assert await page.testid("notice").text_content() == "The resident ended the call."
            assert await page.value("return t.pc;") is None
        finally:
            await media.close()

    asyncio.run(main())


# ------------------------------------------------------- a maintenance alert


def test_a_maintenance_alert_is_a_quiet_notice_and_an_emergency_still_sounds(
    db: Db, tls: Tls
) -> None:
    """``updates_blocked`` is listed apart with its own Acknowledge and no alarm; the twin,
    an emergency arriving beside it, sounds the alarm exactly as before."""

    async def main() -> None:
        async with running(db, tls, clock=time.time) as server, signed_in(server) as page:
            await scenario(server, page)

    async def scenario(server: Server, page: Browser) -> None:
        booth, _ = await server.booth()
        await booth.send(
            Alert(
                id=new_id(),
                alert_id="upd-browser-1",
                booth_id="booth-1",
                kind=AlertKind.UPDATES_BLOCKED,
                raised_at=datetime.now(UTC).replace(microsecond=0),
                site=Site(name="from the booth", street_address="from the booth", room="-"),
            )
        )
        assert (await booth.expect(AlertAck)).status is AlertStatus.RECEIVED
        await page.until("t.alerts.length === 1")
        notice = page.page.locator('[data-testid="maintenance"] [data-testid="alert"]')
        assert await notice.get_attribute("data-kind") == "maintenance"
        assert await notice.locator('[data-testid="alert-kind"]').text_content() == "Maintenance:"
        assert await notice.locator('[data-testid="alert-what"]').text_content() == (
            "Updates for this booth have failed for days: "
            "a technician should check its network and clock."
        )
        assert await notice.locator('[data-testid="alert-site"]').text_content() == (
            "Riverside Library"
        )
        assert await notice.locator('[data-testid="alert-address"]').text_content() == (
            "1 Main St, Springfield"
        )
        assert await notice.locator('[data-testid="alert-room"]').text_content() == "Room 2"
        assert await notice.locator('[data-testid="ack"]').is_visible()
        assert await page.testid("maintenance").is_visible()
        assert await page.testid("alerts").is_hidden()  # not among the emergencies
        assert await page.testid("alarm-banner").is_hidden()
        assert await page.until("t.alarm.chimes === 1")  # one short chime, and then quiet
        await asyncio.sleep(1.5)  # longer than the alarm's beat
        assert await page.value("return t.alarm;") == {
            "sounding": False,
            "audible": True,  # sound works: it is the alarm that was not started
            "beeps": 0,
            "chimes": 1,
        }
        styles = await page.value(
            "const s = (id) => getComputedStyle(document.querySelector(`[data-testid=${id}]`));"
            "return [s('maintenance').borderTopStyle, s('alerts').borderTopStyle,"
            " s('maintenance').borderTopColor === s('alerts').borderTopColor];"
        )
        assert styles == ["dashed", "solid", False]  # it cannot pass for an emergency

        # The twin: an emergency from the same booth sounds the alarm beside the notice.
        await booth.send(alert())
        assert (await booth.expect(AlertAck)).status is AlertStatus.RECEIVED
        await page.until("t.alerts.length === 2")
        alarm = await page.until("t.alarm.sounding && t.alarm.beeps >= 2 && t.alarm")
        assert (alarm["audible"], alarm["chimes"]) == (True, 1)
        assert await page.testid("alarm-banner").is_visible()
        assert "1 unacknowledged alert" in (await page.testid("alarm-text").text_content() or "")
        emergency = page.page.locator('[data-testid="alerts"] [data-testid="alert"]')
        assert await emergency.get_attribute("data-kind") == "emergency"
        assert await emergency.locator('[data-testid="alert-kind"]').text_content() == (
            "EMERGENCY:"
        )

        # Acknowledging the emergency silences it; the notice stays, still quiet.
        await emergency.locator('[data-testid="ack"]').click()
        ack = await booth.expect(AlertAck)
        assert (ack.alert_id, ack.status) == ("emg-browser-1", AlertStatus.ACKNOWLEDGED)
        await page.until("!t.alarm.sounding && t.alerts.length === 1")
        beeps = (await page.value("return t.alarm;"))["beeps"]
        await asyncio.sleep(1.5)
        assert (await page.value("return t.alarm;"))["beeps"] == beeps
        assert await page.testid("alarm-banner").is_hidden()
        assert await notice.is_visible()

        # And the notice has its own acknowledgement, which reaches the booth.
        await notice.locator('[data-testid="ack"]').click()
        ack = await booth.expect(AlertAck)
        assert (ack.alert_id, ack.status) == ("upd-browser-1", AlertStatus.ACKNOWLEDGED)
        await page.until("t.alerts.length === 0")
        assert await page.testid("maintenance").is_hidden()
        assert db.store.unacked_alerts() == []

    asyncio.run(main())
