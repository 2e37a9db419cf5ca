"""The camera's H.264, passed through aiortc unchanged, decoded by a real Chromium.

Both peers run in one loopback-only namespace (``lo_ns``): the booth's side is
aiortc with :class:`~kiosk.call.passthrough.H264PassthroughTrack` fed by the
simulated hardware encoder, the clinician's side Debian's Chromium answering
with receive-only video. aiortc's encoders are counted: not one picture may be
re-encoded.

The encoder runs before the call and makes a keyframe only every 30 s, and the
track is told not to ask for one itself: Chromium's first pictures are
P-frames it cannot decode, so it sends a PLI. Forwarded to
``force_key_frame()``, the next picture is a keyframe and Chromium decodes.
The twin, forwarding off, decodes nothing although Chromium keeps asking.
Then the privacy check, seen in the browser's own picture: paused, the video
turns black and no camera picture is sent; resumed, the picture is back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import h264 as aiortc_h264
from aiortc.codecs import vpx as aiortc_vpx
from playwright.async_api import Page

from hardware.h264 import EncodingTestCard
from kiosk.call.passthrough import H264PassthroughTrack, add_passthrough
from kiosk.call.tracks import Outgoing
from tests.browser import chromium_context, serve_directory
from tests.e2e.test_browser_peer import loopback_ice, wait_for_js_async
from tests.netlab import Netns, NetnsLoop

__all__ = ["loopback_ice"]  # a fixture, used by name

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>clinician</title>
<video id="remote" autoplay playsinline muted></video>
<script>
"use strict";
window.receiver = null;

window.answer = async (sdp) => {
  if (window.receiver) window.receiver.close();
  const pc = new RTCPeerConnection({iceServers: []});
  window.receiver = pc;
  pc.ontrack = (e) => {
    document.getElementById("remote").srcObject = new MediaStream([e.track]);
  };
  await pc.setRemoteDescription({type: "offer", sdp});
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve());
  });
  return pc.localDescription.sdp;
};

window.inbound = async () => {
  const out = {framesDecoded: 0, keyFramesDecoded: 0, pli: 0, fir: 0, width: 0,
               packets: 0, codec: null, fmtp: null};
  const report = await window.receiver.getStats();
  report.forEach((s) => {
    if (s.type !== "inbound-rtp" || s.kind !== "video") return;
    out.framesDecoded = s.framesDecoded || 0;
    out.keyFramesDecoded = s.keyFramesDecoded || 0;
    out.pli = s.pliCount || 0;
    out.fir = s.firCount || 0;
    out.width = s.frameWidth || 0;
    out.packets = s.packetsReceived || 0;
    const codec = report.get(s.codecId);
    if (codec) { out.codec = codec.mimeType; out.fmtp = codec.sdpFmtpLine; }
  });
  return out;
};

// Mean luma of the picture the page shows, or -1 before there is one.
window.luma = () => {
  const video = document.getElementById("remote");
  if (!video.videoWidth) return -1;
  const canvas = document.createElement("canvas");
  canvas.width = 32; canvas.height = 24;
  const g = canvas.getContext("2d");
  g.drawImage(video, 0, 0, 32, 24);
  const d = g.getImageData(0, 0, 32, 24).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
  return sum / (d.length / 4);
};
</script>
"""

DECODE_TIMEOUT_S = 10.0
TWIN_WAIT_S = 3.0
BLACK = 30.0
BRIGHT = 60.0


@pytest.fixture
def encoder_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """aiortc's encode (re-encoding a picture) and pack (sending H.264 as it is) calls."""
    counts = {"h264_encode": 0, "vp8_encode": 0, "pack": 0}

    def counted(name: str, method: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return method(self, *args, **kwargs)

        return wrapper

    h264, vp8 = aiortc_h264.H264Encoder, aiortc_vpx.Vp8Encoder
    monkeypatch.setattr(h264, "encode", counted("h264_encode", h264.encode))
    monkeypatch.setattr(h264, "pack", counted("pack", h264.pack))
    monkeypatch.setattr(vp8, "encode", counted("vp8_encode", vp8.encode))
    return counts


async def offer_to(page: Page, track: H264PassthroughTrack, *, forward: bool) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never the default Google STUN
    add_passthrough(pc, track, direction="sendonly", forward_keyframes=forward)
    await pc.setLocalDescription(await pc.createOffer())
    answer = await page.evaluate("(sdp) => answer(sdp)", pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return pc


def test_chromium_decodes_passed_through_h264_once_its_keyframe_request_is_forwarded(
    lo_ns: Netns, tmp_path: Path, loopback_ice: None, encoder_calls: dict[str, int]
) -> None:
    (tmp_path / "index.html").write_text(PAGE)
    card = EncodingTestCard(320, 240, keyframe_interval=900)  # a keyframe every 30 s
    card.open()
    encoder = card.encoder
    running = encoder.subscribe(lambda frame: None)  # the camera is already encoding
    results: dict[str, Any] = {}

    async def call() -> None:
        with serve_directory(lo_ns, tmp_path) as url:
            async with chromium_context(lo_ns) as browser:
                page = await browser.new_page()
                await page.goto(url + "/index.html")

                # The twin: Chromium asks for a keyframe, nobody passes the request on.
                twin = H264PassthroughTrack(encoder, Outgoing(), keyframe_on_start=False)
                pc = await offer_to(page, twin, forward=False)
                await wait_for_js_async(page, "inbound().then((s) => s.pli > 0)", 10.0)
                await asyncio.sleep(TWIN_WAIT_S)
                results["twin"] = await page.evaluate("inbound()")
                results["twin_requests"] = twin.keyframe_requests
                results["twin_forced"] = encoder.key_frames_forced
                twin.stop()
                await pc.close()

                # Forwarded: the PLI reaches force_key_frame() and Chromium decodes.
                out = Outgoing()
                track = H264PassthroughTrack(encoder, out, keyframe_on_start=False)
                started = time.monotonic()
                pc = await offer_to(page, track, forward=True)
                try:
                    stats = await wait_for_js_async(
                        page, "inbound().then((s) => s.framesDecoded > 15 && s)", DECODE_TIMEOUT_S
                    )
                    results["decoded_after_s"] = time.monotonic() - started
                    results["stats"] = stats
                    results["requests"] = track.keyframe_requests
                    results["forced"] = encoder.key_frames_forced
                    results["bright"] = await wait_for_js_async(
                        page, f"luma() > {BRIGHT} && luma()", 5.0
                    )

                    # Privacy: paused, the picture goes black, and no camera picture is sent.
                    out.paused = True
                    sent = track.sent
                    results["black"] = await wait_for_js_async(
                        page, f"luma() >= 0 && luma() < {BLACK} && luma() + 0.001", 5.0
                    )
                    before = (await page.evaluate("inbound()"))["framesDecoded"]
                    await asyncio.sleep(0.5)
                    after = (await page.evaluate("inbound()"))["framesDecoded"]
                    results["paused_growth"] = after - before
                    results["sent_while_paused"] = track.sent - sent

                    out.paused = False
                    results["back"] = await wait_for_js_async(
                        page, f"luma() > {BRIGHT} && luma()", 5.0
                    )
                    results["final"] = await page.evaluate("inbound()")
                finally:
                    track.stop()
                    await pc.close()

    try:
        with NetnsLoop(lo_ns) as loop:
            loop.run(call(), timeout=90)
    finally:
        running()

    twin = results["twin"]
    assert twin["pli"] > 0 and twin["packets"] > 0  # Chromium asked, and media did arrive ...
    assert twin["framesDecoded"] == 0  # ... but without a keyframe nothing decodes
    assert results["twin_requests"] == 0 and results["twin_forced"] == 0

    stats = results["stats"]
    assert stats["codec"] == "video/H264" and "packetization-mode=1" in stats["fmtp"]
    assert stats["width"] == 320 and stats["pli"] >= 1
    assert results["requests"] >= 1 and results["forced"] >= 1  # the PLI became the keyframe
    assert results["decoded_after_s"] < DECODE_TIMEOUT_S < 30  # long before the periodic one

    assert results["black"] < BLACK and results["sent_while_paused"] == 0
    assert results["paused_growth"] > 0  # black pictures keep the call alive
    assert results["back"] > BRIGHT
    assert results["final"]["framesDecoded"] > stats["framesDecoded"]

    # Not one picture re-encoded by aiortc; every one packed as the encoder made it.
    assert encoder_calls["h264_encode"] == 0 and encoder_calls["vp8_encode"] == 0
    assert encoder_calls["pack"] > stats["framesDecoded"]
