"""Hardware in the loop: the booth's real camera. Skipped off a booth; on a Pi run

    .venv/bin/python -m pytest --hil tests/hardware/test_camera_hil.py

with the camera module connected (and, for the USB test, a UVC camera plugged
in). The venv must see Raspberry Pi OS's picamera2 (``python3-picamera2``;
make the venv with ``--system-site-packages``).
"""

from __future__ import annotations

import threading
import time

import av
import pytest

from hardware.camera import list_video_devices, read_model, usb_camera_node
from hardware.h264 import EncodedFrame, nal_types
from hardware.picamera import PiCamera, choose_pipeline, csi_camera_count

pytestmark = [
    pytest.mark.hil,
    # picamera2 0.3.38 starts its encoder thread with Thread.setDaemon (deprecated in 3.10).
    pytest.mark.filterwarnings("ignore:setDaemon:DeprecationWarning"),
]


def test_the_pi_camera_gives_pictures_and_on_a_pi_4_decodable_baseline_h264() -> None:
    assert csi_camera_count() > 0, "libcamera sees no camera on the CSI connector"
    pipeline = choose_pipeline(read_model(), list_video_devices())
    camera = PiCamera(pipeline=pipeline)
    camera.open()
    try:
        deadline = time.monotonic() + 3
        while camera.latest() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert camera.latest() is not None, "no self-view picture within 3 s"
        if camera.encoder is None:
            assert "5" in (read_model() or ""), f"no hardware encoder: {pipeline.reason}"
            return
        got: list[EncodedFrame] = []
        enough = threading.Event()

        def sink(frame: EncodedFrame) -> None:
            got.append(frame)
            if len(got) >= 45:
                enough.set()

        unsubscribe = camera.encoder.subscribe(sink)
        try:
            time.sleep(0.5)
            camera.encoder.force_key_frame()
            assert enough.wait(5), f"{len(got)} pictures from the hardware encoder in 5 s"
        finally:
            unsubscribe()
    finally:
        camera.close()
    assert got[0].keyframe and nal_types(got[0].data)[:2] == [7, 8]
    assert sum(f.keyframe for f in got) >= 2  # the periodic one and the forced one
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for unit in got for f in decoder.decode(av.Packet(unit.data))]
    assert len(decoded) >= 40 and (decoded[0].width, decoded[0].height) == pipeline.size


def test_a_plugged_in_usb_camera_is_found_and_read() -> None:
    from hardware.v4l2 import UsbCamera

    node = usb_camera_node(list_video_devices())
    assert node is not None, "no USB camera plugged in"
    camera = UsbCamera(node)
    camera.open()
    try:
        deadline = time.monotonic() + 5
        while camera.latest() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert camera.latest() is not None and camera.mode is not None
    finally:
        camera.close()
