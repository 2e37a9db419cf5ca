"""The Pi camera backend off a Pi: the board decision is pure, picamera2 runs on a stub libcamera.

``picamera2`` is pip-installed here but cannot be imported (its ``libcamera``
bindings exist only on Raspberry Pi OS). The ``picamera2`` fixture puts mocks
for ``libcamera``, ``pykms`` and ``kms`` in ``sys.modules`` so the real
picamera2 package imports (its real ``H264Encoder`` and ``Output``), replaces
``Picamera2`` (the camera itself) with :class:`FakePicamera2`, and takes every
module it imported out of ``sys.modules`` afterwards.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar
from unittest import mock

import av
import numpy as np
import pytest

from hardware import picamera
from hardware.camera import VideoDevice, list_video_devices, read_model
from hardware.h264 import KEYFRAME_INTERVAL, EncodedFrame, encode_black
from hardware.picamera import (
    ENCODER_NODE,
    PiCamera,
    Pipeline,
    choose_pipeline,
    csi_camera_count,
    video_configuration,
    yuv420_to_frame,
)
from kiosk.call.passthrough import TIME_BASE, H264PassthroughTrack
from kiosk.call.tracks import Outgoing

PI4_MODEL = "Raspberry Pi 4 Model B Rev 1.4"
PI5_MODEL = "Raspberry Pi 5 Model B Rev 1.0"


def pi4_nodes() -> list[VideoDevice]:
    """``/sys/class/video4linux`` on a Pi 4 (Bookworm) with a camera module attached."""
    names = {
        0: "unicam-image",
        1: "unicam-embedded",
        10: "bcm2835-codec-decode",
        11: "bcm2835-codec-encode",
        12: "bcm2835-codec-isp",
        13: "bcm2835-isp",
        14: "bcm2835-isp",
        15: "bcm2835-isp",
        16: "bcm2835-isp",
        18: "bcm2835-codec-image_fx",
        20: "bcm2835-isp",
        31: "bcm2835-codec-encode_image",
    }
    return [VideoDevice(f"/dev/video{n}", name, 0) for n, name in names.items()]


def pi5_nodes() -> list[VideoDevice]:
    """The same on a Pi 5: the camera front end, the ISP back end, HEVC decode; no encoder."""
    cfe = [VideoDevice(f"/dev/video{n}", "rp1-cfe", 0) for n in range(8)]
    hevc = [VideoDevice("/dev/video19", "rpi-hevc-dec", 0)]
    isp = [VideoDevice(f"/dev/video{n}", "pispbe", 0) for n in range(20, 36)]
    return cfe + hevc + isp


# ---------------------------------------------------------------- the board decision (pure)


def test_a_pi_4_has_the_hardware_encoder() -> None:
    pipeline = choose_pipeline(PI4_MODEL, pi4_nodes())
    assert pipeline.hardware_h264
    assert (pipeline.size, pipeline.fps) == ((640, 480), 30)
    assert ENCODER_NODE in pipeline.reason


def test_a_pi_5_has_none_and_sends_what_its_cpu_sustains() -> None:
    pipeline = choose_pipeline(PI5_MODEL, pi5_nodes())
    assert not pipeline.hardware_h264
    assert (pipeline.size, pipeline.fps) == ((640, 480), 20)
    for model in ("Raspberry Pi 500 Rev 1.0", "Raspberry Pi Compute Module 5 Rev 1.0"):
        assert not choose_pipeline(model, pi5_nodes()).hardware_h264
    # Whatever the node list claims, a Pi 5 family board has no VideoCore encoder.
    assert not choose_pipeline(PI5_MODEL, pi4_nodes()).hardware_h264


def test_the_node_decides_when_it_can_be_seen_the_model_when_not() -> None:
    # A Pi 4 whose encoder node is missing (disabled in config.txt): raw frames, slowly.
    no_encoder = [d for d in pi4_nodes() if d.node != ENCODER_NODE]
    assert not choose_pipeline(PI4_MODEL, no_encoder).hardware_h264
    # No node list at all (sysfs unreadable): the model says it has one.
    for model in (PI4_MODEL, "Raspberry Pi 400 Rev 1.0", "Raspberry Pi Compute Module 4 Rev 1.0"):
        assert choose_pipeline(model, []).hardware_h264
    # The right node on an unknown board: it is the encoder picamera2 opens.
    assert choose_pipeline(None, pi4_nodes()).hardware_h264
    # Nothing known: small and slow.
    slow = choose_pipeline(None, [])
    assert not slow.hardware_h264 and (slow.size, slow.fps) == ((320, 240), 15)
    # A node of that number with another driver is not the encoder.
    other = [VideoDevice(ENCODER_NODE, "uvcvideo camera", 0)]
    assert not choose_pipeline("Some Board", other).hardware_h264


def test_model_and_nodes_are_read_from_the_system(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(PI4_MODEL.encode() + b"\0")
    assert read_model(model) == PI4_MODEL
    assert read_model(tmp_path / "absent") is None

    sysfs = tmp_path / "video4linux"
    usb_dev = tmp_path / "devices" / "usb1" / "1-1" / "1-1:1.0"
    soc_dev = tmp_path / "devices" / "soc" / "codec"
    usb_dev.mkdir(parents=True)
    soc_dev.mkdir(parents=True)
    for n, name, index, dev in [
        (11, "bcm2835-codec-encode", 0, soc_dev),
        (2, "HD Pro Webcam C920", 1, usb_dev),
        (1, "HD Pro Webcam C920", 0, usb_dev),
    ]:
        node = sysfs / f"video{n}"
        node.mkdir(parents=True)
        (node / "name").write_text(name + "\n")
        (node / "index").write_text(f"{index}\n")
        (node / "device").symlink_to(dev)
    assert list_video_devices(sysfs) == [
        VideoDevice("/dev/video1", "HD Pro Webcam C920", 0, True),
        VideoDevice("/dev/video2", "HD Pro Webcam C920", 1, True),
        VideoDevice("/dev/video11", "bcm2835-codec-encode", 0, False),
    ]
    assert list_video_devices(tmp_path / "none") == []


def test_video_configuration_per_pipeline() -> None:
    hardware = video_configuration(choose_pipeline(PI4_MODEL, pi4_nodes()))
    assert hardware["main"] == {"size": (640, 480), "format": "YUV420"}
    assert hardware["lores"] == {"size": (320, 240), "format": "YUV420"}
    assert hardware["encode"] == "main" and hardware["controls"] == {"FrameRate": 30.0}
    raw = video_configuration(choose_pipeline(PI5_MODEL, pi5_nodes()))
    assert raw["main"] == {"size": (640, 480), "format": "BGR888"}  # bytes R, G, B
    assert "lores" not in raw and raw["controls"] == {"FrameRate": 20.0}


def i420_with_stride(rgb: np.ndarray, stride: int) -> np.ndarray:
    """An RGB image as picamera2 lays out YUV420: rows of ``stride`` bytes, padding included."""
    h, w = rgb.shape[:2]
    planes = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    flat = planes.to_ndarray().reshape(-1)
    y = flat[: w * h].reshape(h, w)
    u = flat[w * h : w * h * 5 // 4].reshape(h // 2, w // 2)
    v = flat[w * h * 5 // 4 :].reshape(h // 2, w // 2)
    out = np.zeros(stride * h * 3 // 2, dtype=np.uint8)
    out[: stride * h].reshape(h, stride)[:, :w] = y
    c = (stride // 2) * (h // 2)
    out[stride * h : stride * h + c].reshape(h // 2, stride // 2)[:, : w // 2] = u
    out[stride * h + c :].reshape(h // 2, stride // 2)[:, : w // 2] = v
    return out.reshape(h * 3 // 2, stride)


@pytest.mark.parametrize("stride", [64, 128])
def test_yuv420_becomes_an_rgb_bottom_up_frame(stride: int) -> None:
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[:24] = (200, 40, 40)  # top half red
    rgb[24:] = (40, 40, 200)  # bottom half blue
    frame = yuv420_to_frame(i420_with_stride(rgb, stride), 64, 48)
    rows = np.frombuffer(frame.rgb, dtype=np.uint8).reshape(48, 64, 3).astype(int)
    assert (frame.width, frame.height) == (64, 48)
    assert np.abs(rows[40, 10] - (200, 40, 40)).max() < 12  # top of the image, last row here
    assert np.abs(rows[5, 10] - (40, 40, 200)).max() < 12


def test_off_a_pi_libcamera_finds_no_camera() -> None:
    assert csi_camera_count() == 0


# ---------------------------------------------------------------- picamera2, libcamera stubbed


class FakeRequest:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def make_array(self, name: str) -> np.ndarray:
        return self.arrays[name].copy()


class FakePicamera2:
    """Just enough of ``Picamera2`` to see what the backend asks of it."""

    instances: ClassVar[list[FakePicamera2]] = []
    cameras: ClassVar[int] = 1

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.config_args: dict[str, Any] | None = None
        self.configured: Any = None
        self.post_callback: Any = None
        self.started = self.closed = False
        self.encoders: list[tuple[Any, Any, str | None]] = []
        self.stopped_encoders: list[Any] = []
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [{"Model": "imx708", "Num": n} for n in range(FakePicamera2.cameras)]

    def create_video_configuration(self, **kwargs: Any) -> dict[str, Any]:
        self.config_args = kwargs
        return {"video": kwargs}

    def configure(self, config: Any) -> None:
        self.configured = config

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def start_encoder(self, encoder: Any, output: Any, pts: Any = None, name: Any = None) -> None:
        self.encoders.append((encoder, output, name))

    def stop_encoder(self, encoders: Any = None) -> None:
        self.stopped_encoders.append(encoders)


@pytest.fixture
def picamera2(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The real picamera2 package, importable: libcamera mocked, the camera faked."""
    before = set(sys.modules)
    for name in ("libcamera", "pykms", "kms"):
        monkeypatch.setitem(sys.modules, name, mock.MagicMock(name=name))
    import picamera2 as package

    monkeypatch.setattr(package, "Picamera2", FakePicamera2)
    FakePicamera2.instances = []
    yield package
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("picamera2", "videodev2", "libcamera", "pykms", "kms"):
            del sys.modules[name]


def hardware_pipeline() -> Pipeline:
    return choose_pipeline(PI4_MODEL, pi4_nodes())


def test_csi_camera_count_asks_libcamera(picamera2: ModuleType) -> None:
    FakePicamera2.cameras = 2
    try:
        assert csi_camera_count() == 2
    finally:
        FakePicamera2.cameras = 1


def test_pi_4_wires_the_hardware_encoder_to_the_call_track(picamera2: ModuleType) -> None:
    from picamera2.encoders import H264Encoder
    from picamera2.outputs import Output

    camera = PiCamera(pipeline=hardware_pipeline())
    assert camera.encoder is not None and camera.encoder.size == (640, 480)
    camera.open()
    cam = FakePicamera2.instances[-1]
    assert cam.started and cam.config_args == video_configuration(hardware_pipeline())
    assert cam.encoders == []  # encodes only for a call

    keyframe = encode_black(640, 480, 2)[0][0]
    out = Outgoing()

    async def call() -> tuple[av.Packet, Any]:
        track = H264PassthroughTrack(camera.encoder, out)  # type: ignore[arg-type]
        receiving = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0.05)
        (encoder, output, name), *_ = cam.encoders
        # picamera2's encoder thread delivers a picture through our Output.
        deliver = threading.Thread(
            target=output.outputframe, args=(keyframe, True, 1_000_000), daemon=True
        )
        deliver.start()
        deliver.join()
        packet = await asyncio.wait_for(receiving, 2.0)
        requested = encoder._key_frames_requested
        track.request_keyframe()  # what a forwarded PLI does
        assert encoder._key_frames_requested == requested + 1
        track.stop()
        return packet, (encoder, output, name)

    packet, (encoder, output, name) = asyncio.run(call())
    assert isinstance(encoder, H264Encoder) and isinstance(output, Output)
    assert name == "main"
    assert encoder.profile == "baseline" and encoder.repeat is True
    assert encoder.iperiod == KEYFRAME_INTERVAL <= 30
    assert bytes(packet) == keyframe
    assert packet.time_base == TIME_BASE and packet.pts is not None
    assert cam.stopped_encoders == [encoder]  # the call's end stops the encoder

    camera.close()
    assert cam.closed and not cam.started


def test_the_hardware_encoder_is_given_the_sdp_level(
    picamera2: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import videodev2
    from picamera2.encoders.v4l2_encoder import V4L2Encoder

    applied: list[list[tuple[int, int]]] = []
    monkeypatch.setattr(V4L2Encoder, "_start", lambda self: applied.append(list(self._controls)))
    encoder = picamera.h264_encoder()
    encoder.width, encoder.height, encoder.framerate = 640, 480, 30
    encoder._start()
    controls = dict(applied[-1])
    assert controls[videodev2.V4L2_CID_MPEG_VIDEO_H264_PROFILE] == (
        videodev2.V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE
    )
    assert controls[videodev2.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER] == 1
    assert controls[videodev2.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD] == KEYFRAME_INTERVAL
    assert controls[videodev2.V4L2_CID_MPEG_VIDEO_H264_LEVEL] == (
        videodev2.V4L2_MPEG_VIDEO_H264_LEVEL_3_1
    )
    # picamera2 raising the level for a big stream wins over ours.
    big = picamera.h264_encoder(bitrate=12_000_000)
    big.width, big.height, big.framerate = 1920, 1080, 30
    big._start()
    levels = [v for c, v in applied[-1] if c == videodev2.V4L2_CID_MPEG_VIDEO_H264_LEVEL]
    assert levels == [videodev2.V4L2_MPEG_VIDEO_H264_LEVEL_4_1]


def test_sink_output_passes_video_and_ignores_audio(picamera2: ModuleType) -> None:
    got: list[EncodedFrame] = []
    output = picamera.sink_output(got.append, clock=lambda: 2.5)
    output.outputframe(b"\x00\x00\x01\x65", keyframe=True, timestamp=40)
    output.outputframe(b"\x00\x00\x01\x41", keyframe=False)  # no timestamp: the clock
    output.outputframe(b"audio", audio=True)
    output.outputframe(None)
    assert got == [
        EncodedFrame(b"\x00\x00\x01\x65", True, 40),
        EncodedFrame(b"\x00\x00\x01\x41", False, 2_500_000),
    ]


def test_a_call_before_the_camera_opens_starts_encoding_when_it_does(
    picamera2: ModuleType,
) -> None:
    camera = PiCamera(pipeline=hardware_pipeline())
    assert camera.encoder is not None
    unsubscribe = camera.encoder.subscribe(lambda frame: None)
    camera.encoder.force_key_frame()  # nothing running yet: harmless
    camera.open()
    cam = FakePicamera2.instances[-1]
    assert len(cam.encoders) == 1
    camera.close()
    assert cam.stopped_encoders == [cam.encoders[0][0]]
    unsubscribe()
    assert len(cam.stopped_encoders) == 1


def test_self_view_comes_from_the_lores_stream(picamera2: ModuleType) -> None:
    camera = PiCamera(pipeline=hardware_pipeline())
    assert camera.latest() is None
    camera.open()
    cam = FakePicamera2.instances[-1]
    grey = np.full((240, 320, 3), 128, dtype=np.uint8)
    cam.post_callback(FakeRequest({"lores": i420_with_stride(grey, 320)}))
    frame = camera.latest()
    assert frame is not None and (frame.width, frame.height) == (320, 240)
    assert abs(int(np.frombuffer(frame.rgb, dtype=np.uint8).mean()) - 128) < 4
    camera.close()
    assert camera.latest() is None


def test_pi_5_gives_raw_frames_and_no_encoder(picamera2: ModuleType) -> None:
    pipeline = choose_pipeline(PI5_MODEL, pi5_nodes())
    camera = PiCamera(pipeline=pipeline)
    assert camera.encoder is None
    camera.open()
    cam = FakePicamera2.instances[-1]
    assert cam.config_args == video_configuration(pipeline)
    rgb = np.zeros((480, 640, 3), dtype=np.uint8)
    rgb[0] = (255, 0, 0)  # the top row is red
    cam.post_callback(FakeRequest({"main": rgb}))
    frame = camera.latest()
    assert frame is not None and (frame.width, frame.height) == (640, 480)
    rows = np.frombuffer(frame.rgb, dtype=np.uint8).reshape(480, 640, 3)
    assert tuple(rows[-1, 0]) == (255, 0, 0)  # bottom-up: the top row comes last
    camera.close()


def test_a_camera_that_fails_to_start_is_closed_again(
    picamera2: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: FakePicamera2) -> None:
        raise RuntimeError("Camera frontend has timed out!")

    monkeypatch.setattr(FakePicamera2, "start", broken)
    camera = PiCamera(pipeline=hardware_pipeline())
    with pytest.raises(RuntimeError, match="timed out"):
        camera.open()
    assert FakePicamera2.instances[-1].closed and camera.picam2 is None
