"""Simulated camera and microphone, and the visit's media port."""

from __future__ import annotations

import asyncio

from hardware.audio import SimulatedMicrophone
from hardware.camera import TestCard
from kiosk.media import LocalMedia


def test_test_card_moves_and_is_rgb_of_the_right_size() -> None:
    card = TestCard(64, 48)
    a, b = card.frame_at(0.0), card.frame_at(0.25)
    assert len(a.rgb) == 64 * 48 * 3
    assert a != b


def test_closed_devices_give_nothing() -> None:
    card, mic = TestCard(), SimulatedMicrophone()
    assert card.latest() is None and mic.level() == 0.0
    card.open()
    mic.open()
    assert card.latest() is not None
    assert 0.0 <= SimulatedMicrophone.level_at(1.0) <= 1.0


def test_media_opens_for_the_visit_and_closes_after_audio_only_keeps_the_camera_off() -> None:
    media = LocalMedia(TestCard(), SimulatedMicrophone())
    asyncio.run(media.open(audio_only=True))
    assert media.microphone_on and not media.camera_on and media.preview() is None
    asyncio.run(media.open(audio_only=False))
    assert media.preview() is not None
    asyncio.run(media.close())
    assert media.preview() is None and media.level() == 0.0
