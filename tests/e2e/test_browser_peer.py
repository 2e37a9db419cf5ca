"""Headless Chromium as a WebRTC peer, inside a namespace: the clinician's side in call tests.

Three steps, each needing the one before: Chromium runs in the namespace and
loads a page from it; two peer connections on one page exchange the fake camera;
an aiortc peer (the booth's stack) offers synthetic video and audio and Chromium
answers. Then the same across the booth/clinic veth, each side in its own
namespace, as the call tests will have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from playwright.async_api import Page as AsyncPage
from playwright.sync_api import BrowserContext, Page
from playwright.sync_api import Error as PlaywrightError

from tests.browser import (
    DISABLED_FEATURES,
    browser_pids,
    chromium_context,
    serve_directory,
    wait_for_js,
)
from tests.netlab import Netns, NetnsLoop, Veth

MEDIA_TIMEOUT_S = 20.0

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>booth test peer</title>
<video id="remote" autoplay playsinline muted></video>
<script>
"use strict";
window.receiver = null;

// Inbound media as getStats() reports it on the receiving peer connection.
window.inbound = async (pc) => {
  const out = {framesDecoded: 0, audioBytes: 0, codec: null, ice: pc.iceConnectionState};
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") {
      out.framesDecoded += s.framesDecoded || 0;
      const codec = report.get(s.codecId);
      if (codec) out.codec = codec.mimeType;
    } else if (s.kind === "audio") {
      out.audioBytes += s.bytesReceived || 0;
    }
  });
  return out;
};

const camera = () => navigator.mediaDevices.getUserMedia(
  {video: {width: 320, height: 240}, audio: true});

// Two peer connections on this page: the fake camera from pc1 to pc2.
window.loopback = async () => {
  const stream = await camera();
  const pc1 = new RTCPeerConnection({iceServers: []});
  const pc2 = new RTCPeerConnection({iceServers: []});
  pc1.onicecandidate = (e) => e.candidate && pc2.addIceCandidate(e.candidate);
  pc2.onicecandidate = (e) => e.candidate && pc1.addIceCandidate(e.candidate);
  pc2.ontrack = (e) => { document.getElementById("remote").srcObject = e.streams[0]; };
  stream.getTracks().forEach((t) => pc1.addTrack(t, stream));
  await pc1.setLocalDescription(await pc1.createOffer());
  await pc2.setRemoteDescription(pc1.localDescription);
  await pc2.setLocalDescription(await pc2.createAnswer());
  await pc1.setRemoteDescription(pc2.localDescription);
  window.receiver = pc2;
  window.sender = pc1;
};

// Answer an offer (every candidate in the SDP, no trickle) with the fake camera.
window.answer = async (sdp) => {
  const pc = new RTCPeerConnection({iceServers: []});
  window.receiver = pc;
  pc.ontrack = (e) => { document.getElementById("remote").srcObject = e.streams[0]; };
  await pc.setRemoteDescription({type: "offer", sdp});
  const stream = await camera();
  stream.getTracks().forEach((t) => pc.addTrack(t, stream));
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve());
  });
  return pc.localDescription.sdp;
};
</script>
"""

RECEIVING = "inbound(window.receiver).then((s) => s.framesDecoded > 0 && s.audioBytes > 0 && s)"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The test page, in a directory of its own."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    return root


# ---------------------------------------------------------------- synthetic booth media


class SyntheticVideo(VideoStreamTrack):
    """320x240 moving colour bars at 30 fps: cheap, and visibly not frozen."""

    def __init__(self) -> None:
        super().__init__()
        bars = np.repeat(np.arange(0, 256, 32, dtype=np.uint8), 40)
        self._base = np.stack([np.tile(bars, (240, 1))] * 3, axis=-1)
        self.frames = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = np.roll(self._base, self.frames * 4, axis=1)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


class SyntheticAudio(MediaStreamTrack):
    """A 440 Hz tone, 48 kHz mono, 20 ms frames, paced in real time."""

    kind = "audio"
    RATE = 48_000
    SAMPLES = 960

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._sent = 0
        t = np.arange(self.SAMPLES) / self.RATE
        self._tone = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self._sent / self.RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.AudioFrame.from_ndarray(self._tone, format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._sent += self.SAMPLES
        return frame


@contextlib.asynccontextmanager
async def booth_peer() -> AsyncIterator[tuple[RTCPeerConnection, dict[str, int]]]:
    """An aiortc peer sending synthetic video and audio, counting what it receives back."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never the default Google STUN
    received = {"video": 0, "audio": 0}
    consumers: list[asyncio.Task[None]] = []

    async def consume(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                received[track.kind] += 1

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        consumers.append(asyncio.ensure_future(consume(track)))

    video, audio = SyntheticVideo(), SyntheticAudio()
    pc.addTrack(video)
    pc.addTrack(audio)
    try:
        yield pc, received
    finally:
        video.stop()
        audio.stop()
        await pc.close()
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)


async def until_received(received: dict[str, int], timeout: float = MEDIA_TIMEOUT_S) -> None:
    """Wait until the aiortc peer has had a video frame from Chromium (or give up)."""
    deadline = time.monotonic() + timeout
    while received["video"] == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def wait_for_js_async(page: AsyncPage, expression: str, timeout: float) -> Any:
    """Async twin of :func:`tests.browser.wait_for_js`."""
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} still {value!r} after {timeout} s")
        await asyncio.sleep(0.2)


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice skips 127.0.0.1 on its own: offer it, the only address a lo-only namespace has."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


# ---------------------------------------------------------------- tests


def test_chromium_runs_inside_the_namespace_and_loads_a_local_page(
    chromium_page: Page, lo_ns: Netns, site: Path
) -> None:
    with serve_directory(lo_ns, site) as url:
        chromium_page.goto(url + "/index.html")
        assert chromium_page.title() == "booth test peer"
        # Names go nowhere: not even a lookup leaves the browser.
        with pytest.raises(PlaywrightError, match="ERR_NAME_NOT_RESOLVED"):
            chromium_page.goto("http://example.com/", timeout=10_000)

    command_lines = [Path(f"/proc/{pid}/cmdline").read_text() for pid in browser_pids(lo_ns)]
    browsers = [c.split("\0") for c in command_lines if "--type=" not in c]  # not a child
    assert len(browsers) == 1, "no chromium browser process inside the namespace"
    flag = "--disable-features="
    feature_lists = [a[len(flag) :].split(",") for a in browsers[0] if a.startswith(flag)]
    # Chromium honours only the last --disable-features: it must hold everyone's.
    assert set(DISABLED_FEATURES) <= set(feature_lists[-1])
    for earlier in feature_lists[:-1]:
        assert set(earlier) <= set(feature_lists[-1])


def test_webrtc_loopback_on_one_page_decodes_the_fake_camera(
    chromium_page: Page, lo_ns: Netns, site: Path
) -> None:
    with serve_directory(lo_ns, site) as url:
        chromium_page.goto(url + "/index.html")
        chromium_page.evaluate("loopback()")
        stats = wait_for_js(chromium_page, RECEIVING, MEDIA_TIMEOUT_S)
    assert stats["framesDecoded"] > 0 and stats["audioBytes"] > 0
    assert stats["ice"] in ("connected", "completed")


def test_aiortc_offers_synthetic_media_and_chromium_answers(
    lo_ns: Netns, site: Path, loopback_ice: None
) -> None:
    """Both peers in one loopback-only namespace, driven from one asyncio loop there."""

    async def call() -> tuple[dict[str, Any], dict[str, int]]:
        with serve_directory(lo_ns, site) as url:
            async with booth_peer() as (pc, received), chromium_context(lo_ns) as browser:
                await pc.setLocalDescription(await pc.createOffer())  # gathers all candidates
                assert "127.0.0.1" in pc.localDescription.sdp
                page = await browser.new_page()
                await page.goto(url + "/index.html")
                answer = await page.evaluate("(sdp) => answer(sdp)", pc.localDescription.sdp)
                await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                stats = await wait_for_js_async(page, RECEIVING, MEDIA_TIMEOUT_S)
                await until_received(received)
                return stats, dict(received)

    with NetnsLoop(lo_ns) as booth:
        stats, received = booth.run(call(), timeout=60)
    assert stats["framesDecoded"] > 0 and stats["audioBytes"] > 0
    assert stats["codec"] in ("video/VP8", "video/H264")
    assert received["video"] > 0  # and Chromium's fake camera reached aiortc


def test_booth_and_clinic_in_separate_namespaces_call_across_the_veth(
    booth_clinic: Veth, chromium_in: Callable[..., BrowserContext], site: Path
) -> None:
    """aiortc on the booth side, Chromium on the clinic side: no patching, real addresses."""
    link = booth_clinic
    browser = chromium_in(link.b.ns)
    page = browser.new_page()

    async def offer(pc: RTCPeerConnection) -> str:
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    # The page from the clinic's own 127.0.0.1: a secure context, unlike http://10.77.1.2.
    with NetnsLoop(link.a.ns) as booth, serve_directory(link.b.ns, site) as url:
        peer = booth.run(_enter(booth_peer()))
        pc, received = peer.value
        try:
            sdp = booth.run(offer(pc))
            assert link.a.ip in sdp
            page.goto(url + "/index.html")
            answer = page.evaluate("(sdp) => answer(sdp)", sdp)
            assert link.b.ip in answer  # mDNS hiding is off: Chromium offers its real address
            booth.run(pc.setRemoteDescription(RTCSessionDescription(answer, "answer")))
            stats = wait_for_js(page, RECEIVING, MEDIA_TIMEOUT_S)
            booth.run(until_received(received))
        finally:
            booth.run(peer.exit())
    assert stats["framesDecoded"] > 0 and stats["audioBytes"] > 0
    assert received["video"] > 0


class _Entered:
    """An async context manager entered on a loop, to be exited on the same loop later."""

    def __init__(self, manager: contextlib.AbstractAsyncContextManager[Any], value: Any) -> None:
        self._manager = manager
        self.value = value

    async def exit(self) -> None:
        await self._manager.__aexit__(None, None, None)


async def _enter(manager: contextlib.AbstractAsyncContextManager[Any]) -> _Entered:
    return _Entered(manager, await manager.__aenter__())
