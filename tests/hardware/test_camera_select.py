"""Which camera backend ``[hardware] camera`` gets: chosen, or detected (``auto``)."""

from __future__ import annotations

import pytest

from hardware.camera import (
    CAMERA_CHOICES,
    TestCard,
    VideoDevice,
    detect_camera,
    make_camera,
    usb_camera_node,
)
from hardware.picamera import PiCamera
from hardware.v4l2 import UsbCamera

PI_NODES = [
    VideoDevice("/dev/video0", "unicam-image", 0),
    VideoDevice("/dev/video11", "bcm2835-codec-encode", 0),
]
WEBCAM = [
    VideoDevice("/dev/video2", "HD Pro Webcam C920", 0, usb=True),
    VideoDevice("/dev/video3", "HD Pro Webcam C920", 1, usb=True),  # its metadata node
]


def test_usb_camera_is_the_first_node_of_a_usb_device() -> None:
    assert usb_camera_node(PI_NODES + WEBCAM) == "/dev/video2"
    assert usb_camera_node(WEBCAM[1:]) is None  # a metadata node alone is no camera
    assert usb_camera_node(PI_NODES) is None  # the Pi's own nodes exist without a camera


def test_auto_prefers_the_pi_camera_then_usb_then_none() -> None:
    assert detect_camera(1, PI_NODES + WEBCAM) == "picamera"
    assert detect_camera(0, PI_NODES + WEBCAM) == "usb"
    # Nothing found: no camera, never a test card a clinician could take for a fault.
    assert detect_camera(0, PI_NODES) is None
    assert detect_camera(0, []) is None


def test_make_camera_builds_each_backend() -> None:
    assert isinstance(make_camera("test_card"), TestCard)
    usb = make_camera("usb", devices=PI_NODES + WEBCAM)
    assert isinstance(usb, UsbCamera) and usb.device == "/dev/video2"
    assert isinstance(make_camera("picamera", devices=[]), PiCamera)  # opened only on open()
    assert make_camera("auto", devices=PI_NODES, csi_cameras=lambda: 0) is None
    found = make_camera("auto", devices=WEBCAM, csi_cameras=lambda: 0)
    assert isinstance(found, UsbCamera)
    assert isinstance(make_camera("auto", devices=WEBCAM, csi_cameras=lambda: 1), PiCamera)
    # Off a Pi, auto asks libcamera through picamera2, which is not there: no Pi camera.
    assert make_camera("auto", devices=[]) is None
    with pytest.raises(ValueError, match="auto, picamera, usb, test_card"):
        make_camera("webcam")
    assert CAMERA_CHOICES == ("auto", "picamera", "usb", "test_card")
