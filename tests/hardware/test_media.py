"""Simulated camera and microphone, and the visit's media port."""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hardware.audio import (
    SAMPLE_RATE,
    PcmMicrophone,
    PipeSpeaker,
    SimulatedMicrophone,
    SimulatedSpeaker,
    apply_volume,
    call_player_command,
    gain,
    rms,
    wav_stream_header,
)
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


# ---------------------------------------------------------------- call audio

FAKE_PLAYER = """\
import sys
from pathlib import Path
data = sys.stdin.buffer.read()
Path(sys.argv[1]).write_bytes(data)
"""


def test_the_simulated_microphone_speaks_a_tone_and_closed_it_is_silent() -> None:
    mic = SimulatedMicrophone(clock=lambda: 1.0)
    assert mic.read(960) == bytes(1920)  # closed: silence, never an error
    mic.open()
    assert isinstance(mic, PcmMicrophone)
    chunk = mic.read(960)
    assert len(chunk) == 1920
    assert 0.05 < rms(chunk) < 0.5  # loud enough to hear, never clipped
    samples = np.frombuffer(chunk + mic.read(960), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / samples.size
    assert abs(peak_hz - 440) < 30  # one continuous tone across reads


def test_volume_steps_are_three_decibels_and_the_cap_holds() -> None:
    assert gain(0) == 0.0 and gain(10) == 1.0
    assert gain(9) == pytest.approx(10 ** (-3 / 20))
    assert gain(6) == pytest.approx(10 ** (-12 / 20))
    assert gain(10, cap=7) == gain(7) and gain(-3) == 0.0 and gain(99) == 1.0
    loud = np.full(480, 30000, dtype="<i2").tobytes()
    assert rms(apply_volume(loud, 0.5)) == pytest.approx(rms(loud) / 2, rel=1e-3)
    assert max(np.frombuffer(apply_volume(loud, 4.0), dtype="<i2")) == 32767  # clipped


def test_the_simulated_speaker_counts_samples_and_level_after_the_volume() -> None:
    speaker = SimulatedSpeaker(volume=10, max_volume=8)
    assert speaker.volume == 8  # the configured cap wins over the buttons
    tone = SimulatedMicrophone(clock=lambda: 1.0)
    tone.open()
    speaker.open()
    speaker.play(tone.read(960))
    assert speaker.samples == 960 and speaker.loud_samples == 960
    full = rms(tone.read(960))
    speaker.play(tone.read(960))
    assert speaker.level == pytest.approx(full * gain(8), rel=0.1)
    speaker.set_volume(0)
    speaker.play(tone.read(960))
    assert speaker.level == 0.0 and speaker.samples == 2880 and speaker.loud_samples == 1920


def test_the_call_player_reads_a_wav_stream_from_stdin() -> None:
    assert call_player_command(None, pipewire=False)[0] == "aplay"
    assert call_player_command("plughw:1,0", pipewire=False)[-3:] == ["-D", "plughw:1,0", "-"]
    assert call_player_command("headset", pipewire=True) == [
        "pw-play",
        "--latency",
        "60ms",
        "--target",
        "headset",
        "-",
    ]
    header = wav_stream_header()
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt " and len(header) == 44
    channels, rate, _, _, bits = struct.unpack_from("<HIIHH", header, 22)
    assert (channels, rate, bits) == (1, 48_000, 16)


def test_the_pipe_speaker_pipes_wav_with_the_volume_applied(tmp_path: Path) -> None:
    script = tmp_path / "player.py"
    script.write_text(FAKE_PLAYER)
    out = tmp_path / "got.wav"
    speaker = PipeSpeaker(player=[sys.executable, str(script), str(out)], volume=5)
    pcm = np.full(960, 10000, dtype="<i2").tobytes()
    speaker.open()
    assert speaker.playing
    for _ in range(5):
        speaker.play(pcm)
    proc = speaker._proc  # let the player read to the end before the speaker is closed
    assert proc is not None and proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)
    speaker.close()
    data = out.read_bytes()
    assert data[:44] == wav_stream_header()
    body = np.frombuffer(data[44:], dtype="<i2")
    assert body.size == 4800
    assert int(body[0]) == int(10000 * gain(5))


def test_a_missing_player_leaves_the_call_silent_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    speaker = PipeSpeaker(player=["no-such-player-here"])
    speaker.open()
    speaker.open()
    speaker.play(bytes(1920))  # nothing to play into: not an error
    assert not speaker.playing
    assert sum("not installed" in r.getMessage() for r in caplog.records) == 1
    speaker.close()


def test_a_player_that_dies_is_noticed_and_the_call_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    speaker = PipeSpeaker(player=[sys.executable, "-c", "pass"])
    speaker.open()
    deadline = time.monotonic() + 5
    while speaker.playing and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in range(50):
        speaker.play(bytes(1920))
    assert not speaker.playing
    assert sum("player exited" in r.getMessage() for r in caplog.records) == 1
    speaker.close()


def test_a_stuck_player_costs_dropped_audio_never_a_blocked_call(tmp_path: Path) -> None:
    speaker = PipeSpeaker(
        player=[sys.executable, "-c", "import time; time.sleep(30)"], max_buffered=0.1
    )
    speaker.open()
    try:
        start = time.monotonic()
        for _ in range(200):  # 4 s of audio into a pipe nobody reads
            speaker.play(bytes(1920))
        assert time.monotonic() - start < 1.0
        assert speaker.dropped > 0
    finally:
        speaker.close()
    assert not speaker.playing
