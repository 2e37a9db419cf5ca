"""``[hardware] camera``: which camera backend the booth uses."""

from __future__ import annotations

import pytest

from hardware.camera import CAMERA_CHOICES
from kiosk.config import CameraChoice, from_dict
from kiosk.errors import ConfigError
from tests.kiosk.test_config import BOOTH_TOML, example, minimal, problems, put


def test_camera_defaults_to_auto_and_the_example_says_so() -> None:
    assert from_dict(minimal()).hardware.camera is CameraChoice.AUTO
    assert from_dict(example()).hardware.camera is CameraChoice.AUTO
    assert 'camera = "auto"' in BOOTH_TOML.read_text(encoding="utf-8")


@pytest.mark.parametrize("value", list(CAMERA_CHOICES))
def test_every_backend_can_be_chosen(value: str) -> None:
    assert from_dict(put(minimal(), "hardware.camera", value)).hardware.camera == value


def test_config_offers_exactly_the_backends_there_are() -> None:
    assert tuple(c.value for c in CameraChoice) == CAMERA_CHOICES


@pytest.mark.parametrize("value", ["webcam", "PiCamera", "", 0, True])
def test_an_unknown_camera_lists_the_choices(value: object) -> None:
    assert problems(put(minimal(), "hardware.camera", value)) == [
        'hardware.camera: must be one of "auto", "picamera", "usb", "test_card", not '
        + (f'"{value}"' if isinstance(value, str) else str(value).lower())
    ]
    with pytest.raises(ConfigError):
        from_dict(put(minimal(), "hardware.camera", value))
