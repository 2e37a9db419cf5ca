"""The Raspberry Pi camera (CSI connector) through picamera2: the only module that imports it.

``picamera2`` and its ``libcamera`` bindings exist only on a Pi (Raspberry Pi
OS's ``python3-picamera2``, in a venv made with ``--system-site-packages``),
so they are imported inside the functions that need them, never at module
level: this module imports anywhere, and tests stub ``libcamera``.

Two pipelines, chosen by :func:`choose_pipeline` from what the board has:

* **Hardware H.264** (Pi 4, 400, CM4, 3, Zero 2: the VideoCore encoder at
  ``/dev/video11``, driver name ``bcm2835-codec-encode``). The main stream
  (640x480 YUV420, 30 fps) goes to picamera2's ``H264Encoder`` configured as
  WebRTC wants it (baseline profile, level 3.1 as aiortc's SDP offers, SPS/PPS
  repeated, a keyframe a second); its output reaches the call unchanged
  through :class:`PiH264Encoder` (an :class:`~hardware.h264.EncodedVideo`),
  never decoded and re-encoded. A small lores stream (320x240) feeds the
  booth's self-view.
* **Raw frames** (Pi 5, 500, CM5: no hardware encoder). The camera gives RGB
  at a size and rate the CPU can encode in software in real time (640x480 at
  20 fps on a Pi 5, the call's full video level), and the call's
  :class:`~kiosk.call.tracks.CameraTrack` hands them to aiortc's encoder.
  ``camera.encoder`` is None.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import av
import numpy as np

from hardware.camera import Frame, VideoDevice, list_video_devices, read_model
from hardware.h264 import (
    DEFAULT_BITRATE,
    KEYFRAME_INTERVAL,
    WEBRTC_LEVEL,
    WEBRTC_PROFILE,
    EncodedFrame,
    EncoderFanout,
    Sink,
)

_log = logging.getLogger(__name__)

ENCODER_NODE: Final = "/dev/video11"
"""Where picamera2's ``H264Encoder`` opens the VideoCore encoder (the path is fixed there)."""
ENCODER_NAME: Final = "bcm2835-codec-encode"
HARDWARE_MODE: Final = ((640, 480), 30)
"""Size and rate sent from the hardware encoder: the call's largest picture, at full rate."""
PI5_RAW_MODE: Final = ((640, 480), 20)
"""What a Pi 5's cores encode in software in real time: the call's full video level (VP8)."""
SLOW_RAW_MODE: Final = ((320, 240), 15)
"""Anything else without an encoder (unknown boards): small and slow, but never behind."""
PREVIEW_SIZE: Final = (320, 240)
"""The self-view on the booth's screen (lores stream, hardware pipeline)."""

_PI5_FAMILY = re.compile(r"Raspberry Pi (5|500|Compute Module 5)\b")
_ENCODER_FAMILY = re.compile(r"Raspberry Pi (4|400|Compute Module 4|Compute Module 3|3|Zero 2)\b")


@dataclass(frozen=True)
class Pipeline:
    """How the Pi camera's video reaches the call."""

    hardware_h264: bool
    size: tuple[int, int]
    fps: int
    reason: str


def choose_pipeline(model: str | None, devices: Sequence[VideoDevice]) -> Pipeline:
    """Hardware H.264 when the board has the encoder, else raw frames the CPU can keep up with.

    ``model`` is ``/proc/device-tree/model``; ``devices`` the video nodes
    (:func:`hardware.camera.list_video_devices`). The encoder node decides
    when the list shows it; a Pi 5 family board never has one. With no list
    at all (sysfs unreadable), the model decides.
    """
    has_node = any(d.node == ENCODER_NODE and d.name == ENCODER_NAME for d in devices)
    pi5 = model is not None and _PI5_FAMILY.search(model) is not None
    if has_node and not pi5:
        size, fps = HARDWARE_MODE
        return Pipeline(True, size, fps, f"hardware H.264 encoder at {ENCODER_NODE}")
    if pi5:
        size, fps = PI5_RAW_MODE
        return Pipeline(False, size, fps, "Raspberry Pi 5 family: no hardware H.264 encoder")
    if not devices and model is not None and _ENCODER_FAMILY.search(model) is not None:
        size, fps = HARDWARE_MODE
        return Pipeline(True, size, fps, f"{model}: has the VideoCore H.264 encoder")
    size, fps = SLOW_RAW_MODE
    return Pipeline(False, size, fps, f"no hardware H.264 encoder on {model or 'this board'}")


def video_configuration(
    pipeline: Pipeline, preview: tuple[int, int] = PREVIEW_SIZE
) -> dict[str, Any]:
    """Keyword arguments for ``Picamera2.create_video_configuration`` for ``pipeline``.

    ``BGR888`` is picamera2's name for bytes in R, G, B order (libcamera names
    the 32-bit word), which is what :class:`~hardware.camera.Frame` holds.
    """
    controls = {"FrameRate": float(pipeline.fps)}
    if pipeline.hardware_h264:
        return {
            "main": {"size": pipeline.size, "format": "YUV420"},
            "lores": {"size": preview, "format": "YUV420"},
            "controls": controls,
            "encode": "main",
            "display": None,
        }
    return {
        "main": {"size": pipeline.size, "format": "BGR888"},
        "controls": controls,
        "display": None,
    }


def yuv420_to_frame(array: np.ndarray, width: int, height: int) -> Frame:
    """picamera2's YUV420 array ((h*3/2) rows of ``stride`` bytes) as an RGB, bottom-up Frame.

    The Y plane has ``stride`` bytes a row, U and V ``stride/2`` (two chroma
    rows per array row); padding beyond ``width`` is dropped.
    """
    stride = array.shape[1]
    flat = array.reshape(-1)
    y = flat[: stride * height].reshape(height, stride)[:, :width]
    chroma = (stride // 2) * (height // 2)
    start = stride * height
    u = flat[start : start + chroma].reshape(height // 2, stride // 2)[:, : width // 2]
    v = flat[start + chroma : start + 2 * chroma].reshape(height // 2, stride // 2)[:, : width // 2]
    i420 = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
    video = av.VideoFrame.from_ndarray(i420.reshape(height * 3 // 2, width), format="yuv420p")
    rgb = video.to_ndarray(format="rgb24")
    return Frame(width, height, np.ascontiguousarray(rgb[::-1]).tobytes())


def csi_camera_count() -> int:
    """How many cameras libcamera sees (0 off a Pi, or when picamera2 is not installed)."""
    try:
        from picamera2 import Picamera2
    except Exception:  # ImportError off a Pi; libcamera can fail in other ways
        return 0
    try:
        return len(Picamera2.global_camera_info())
    except Exception as exc:
        _log.warning("libcamera could not list cameras (%s)", type(exc).__name__)
        return 0


def h264_encoder(
    *, bitrate: int = DEFAULT_BITRATE, iperiod: int = KEYFRAME_INTERVAL, level: str = WEBRTC_LEVEL
) -> Any:
    """picamera2's hardware ``H264Encoder`` set up for WebRTC.

    Baseline profile, SPS/PPS before every keyframe (``repeat``), a keyframe
    every ``iperiod`` pictures, and the H.264 level the SDP offers.
    picamera2 sets the level only when it must raise it, so a mixin between
    ``H264Encoder`` and ``V4L2Encoder`` adds the level control to the list
    ``H264Encoder._start`` builds, just before ``V4L2Encoder._start`` applies
    it (unless picamera2 already chose a level).
    """
    import videodev2  # type: ignore[import-untyped]  # comes with picamera2
    from picamera2.encoders import H264Encoder
    from picamera2.encoders.v4l2_encoder import V4L2Encoder

    level_cid = videodev2.V4L2_CID_MPEG_VIDEO_H264_LEVEL
    level_value = getattr(videodev2, "V4L2_MPEG_VIDEO_H264_LEVEL_" + level.replace(".", "_"))

    class _WebRtcLevel(V4L2Encoder):  # type: ignore[misc]
        def _start(self) -> None:
            if all(cid != level_cid for cid, _ in self._controls):
                self._controls.append((level_cid, level_value))
            super()._start()

    class WebRtcH264Encoder(H264Encoder, _WebRtcLevel):  # type: ignore[misc]
        """H264Encoder, with the H.264 level set."""

    return WebRtcH264Encoder(bitrate=bitrate, repeat=True, iperiod=iperiod, profile=WEBRTC_PROFILE)


def sink_output(sink: Sink, clock: Callable[[], float] = time.monotonic) -> Any:
    """A picamera2 ``Output`` handing each encoded picture to ``sink`` (on the encoder's thread)."""
    from picamera2.outputs import Output

    class SinkOutput(Output):  # type: ignore[misc]
        def outputframe(
            self,
            frame: Any,
            keyframe: bool = True,
            timestamp: int | None = None,
            packet: Any = None,
            audio: bool = False,
        ) -> None:
            if audio or frame is None:
                return
            taken = int(timestamp) if timestamp is not None else int(clock() * 1_000_000)
            sink(EncodedFrame(bytes(frame), bool(keyframe), taken))

    return SinkOutput()


class PiH264Encoder(EncoderFanout):
    """The Pi's hardware H.264 encoder as :class:`~hardware.h264.EncodedVideo`.

    It encodes while someone is subscribed (a call's video track) and the
    camera is open; opening the camera later starts it then.
    """

    def __init__(
        self,
        camera: PiCamera,
        *,
        bitrate: int = DEFAULT_BITRATE,
        iperiod: int = KEYFRAME_INTERVAL,
        level: str = WEBRTC_LEVEL,
    ) -> None:
        super().__init__()
        self._camera = camera
        self._bitrate, self._iperiod, self._level = bitrate, iperiod, level
        self._active: Any = None
        self.key_frames_requested = 0

    @property
    def size(self) -> tuple[int, int]:
        return self._camera.pipeline.size

    def force_key_frame(self) -> None:
        self.key_frames_requested += 1
        active = self._active
        if active is not None:
            active.force_key_frame()

    def _start(self) -> None:
        picam2 = self._camera.picam2
        if picam2 is None or self._active is not None:
            return  # starts when the camera opens
        encoder = h264_encoder(bitrate=self._bitrate, iperiod=self._iperiod, level=self._level)
        picam2.start_encoder(encoder, sink_output(self._emit), name="main")
        self._active = encoder

    def _stop(self) -> None:
        active, self._active = self._active, None
        picam2 = self._camera.picam2
        if active is not None and picam2 is not None:
            picam2.stop_encoder(active)

    def camera_opened(self) -> None:
        with self._sinks_lock:
            if self.running:
                self._start()

    def camera_closing(self) -> None:
        with self._sinks_lock:
            self._stop()


class PiCamera:
    """The CSI camera: self-view pictures (:meth:`latest`); on a Pi 4 also H.264 (``encoder``)."""

    def __init__(
        self,
        *,
        camera_num: int = 0,
        pipeline: Pipeline | None = None,
        preview: tuple[int, int] = PREVIEW_SIZE,
        bitrate: int = DEFAULT_BITRATE,
        iperiod: int = KEYFRAME_INTERVAL,
    ) -> None:
        self.pipeline = pipeline or choose_pipeline(read_model(), list_video_devices())
        self._camera_num = camera_num
        self._preview = preview
        self.picam2: Any = None
        self._newest: np.ndarray | None = None
        self._lock = threading.Lock()
        self._encoder = (
            PiH264Encoder(self, bitrate=bitrate, iperiod=iperiod)
            if self.pipeline.hardware_h264
            else None
        )
        _log.info("pi camera: %s", self.pipeline.reason)

    @property
    def encoder(self) -> PiH264Encoder | None:
        return self._encoder

    @property
    def _view(self) -> tuple[str, tuple[int, int]]:
        if self.pipeline.hardware_h264:
            return "lores", self._preview
        return "main", self.pipeline.size

    def open(self) -> None:
        if self.picam2 is not None:
            return
        from picamera2 import Picamera2

        picam2 = Picamera2(self._camera_num)
        try:
            wanted = video_configuration(self.pipeline, self._preview)
            config = picam2.create_video_configuration(**wanted)
            picam2.configure(config)
            picam2.post_callback = self._on_request
            picam2.start()
        except Exception:
            picam2.close()
            raise
        self.picam2 = picam2
        if self._encoder is not None:
            self._encoder.camera_opened()

    def close(self) -> None:
        picam2 = self.picam2
        if picam2 is None:
            return
        if self._encoder is not None:
            self._encoder.camera_closing()
        self.picam2 = None
        try:
            picam2.stop()
        finally:
            picam2.close()
            with self._lock:
                self._newest = None

    def _on_request(self, request: Any) -> None:
        """picamera2's camera thread, every picture: keep a copy of the newest self-view."""
        array = request.make_array(self._view[0])
        with self._lock:
            self._newest = array

    def latest(self) -> Frame | None:
        with self._lock:
            array = self._newest
        if array is None:
            return None
        width, height = self._view[1]
        if self.pipeline.hardware_h264:
            return yuv420_to_frame(array, width, height)
        rows = np.asarray(array)[:height, :width, :3]
        return Frame(width, height, np.ascontiguousarray(rows[::-1]).tobytes())


__all__ = [
    "ENCODER_NAME",
    "ENCODER_NODE",
    "PiCamera",
    "PiH264Encoder",
    "Pipeline",
    "choose_pipeline",
    "csi_camera_count",
    "h264_encoder",
    "sink_output",
    "video_configuration",
    "yuv420_to_frame",
]
