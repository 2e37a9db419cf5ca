"""The microphone through a recorder process, and where call audio and prompts go.

Neither PipeWire nor a sound card runs here, so the players and recorders are
small scripts put on ``PATH`` under the real programs' names: they record the
command line they were started with (that is where the device is named) and
play or make real sound data. The booth's own code (the commands it builds,
the processes, the pipes) is all real.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import stat
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hardware.audio import (
    EC_SINK,
    EC_SOURCE,
    SAMPLE_RATE,
    AudioNode,
    AudioRouter,
    PipeMicrophone,
    PipeSpeaker,
    Route,
    parse_pw_dump,
    recorder_command,
    rms,
    skip_wav_header,
    wav_stream_header,
)
from hardware.events import DeviceKind
from hardware.speech import Speaker as PromptSpeaker
from kiosk import config
from kiosk.app import BoothRuntime

ROOT = Path(__file__).resolve().parents[2]

# A recorder: notes its argv, then writes a 440 Hz tone (raw, or after a WAV header
# with an extra chunk when --wav), or zeros (--zeros), or exits at once (--die).
RECORDER = r"""
import json, math, os, struct, sys, time
log = os.environ["AUDIO_LOG"]
with open(log, "a") as f:
    f.write(json.dumps({"prog": os.path.basename(sys.argv[0]), "argv": sys.argv[1:]}) + "\n")
mode = os.environ.get("RECORDER_MODE", "tone")
SR = 48000
if mode == "die":
    sys.exit(3)
out = sys.stdout.buffer
if mode == "wav":
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 48000, 96000, 2, 16)
    out.write(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + fmt
              + b"LIST" + struct.pack("<I", 4) + b"INFO"
              + b"data" + struct.pack("<I", 0xFFFFFFFF))
n = 0
while True:
    if mode == "zeros":
        chunk = bytes(1920)
    else:
        chunk = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * (n + i) / SR)))
                         for i in range(960))
    n += 960
    try:
        out.write(chunk); out.flush()
    except BrokenPipeError:
        break
    time.sleep(0.02)
"""

# A player: notes its argv and counts what reaches it.
PLAYER = r"""
import json, os, sys
log = os.environ["AUDIO_LOG"]
with open(log, "a") as f:
    f.write(json.dumps({"prog": os.path.basename(sys.argv[0]), "argv": sys.argv[1:]}) + "\n")
while sys.stdin.buffer.read(4096):
    pass
"""


@pytest.fixture
def fake_audio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``arecord``, ``aplay``, ``pw-record`` and ``pw-play`` on PATH; returns their log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("arecord", RECORDER), ("pw-record", RECORDER)):
        _script(bin_dir / name, body)
    for name in ("aplay", "pw-play"):
        _script(bin_dir / name, PLAYER)
    log = tmp_path / "audio.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("AUDIO_LOG", str(log))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)  # no PipeWire: the ALSA tools
    yield log


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _runs(log: Path, prog: str) -> list[list[str]]:
    return [
        entry["argv"]
        for entry in map(json.loads, log.read_text().splitlines())
        if entry["prog"] == prog
    ]


def _until(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


# ---------------------------------------------------------------- the microphone


def test_the_wav_header_is_skipped_whatever_chunks_it_has_and_raw_data_passes() -> None:
    header = wav_stream_header()
    samples = struct.pack("<4h", 1, -1, 2, -2)
    assert skip_wav_header(header + samples) == samples
    assert skip_wav_header(header[:20]) is None  # more needed
    assert skip_wav_header(b"RI") is None
    assert skip_wav_header(samples) == samples  # raw: no header
    assert skip_wav_header(b"RIFF" + bytes(5000)) == b""  # not a header we know: dropped


@pytest.mark.parametrize("mode", ["tone", "wav"])
def test_the_microphone_hands_out_the_recorders_sound_without_ever_blocking(
    fake_audio: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORDER_MODE", mode)
    mic = PipeMicrophone()
    assert mic.read(960) == bytes(1920)  # closed: silence, at once
    mic.open()
    try:
        _until(lambda: mic.level() > 0.0)
        pcm = mic.read(960)
        assert len(pcm) == 1920 and rms(pcm) > 0.1  # the tone, not a header
        samples = np.frombuffer(pcm, dtype="<i2")
        spectrum = np.abs(np.fft.rfft(samples))
        assert abs(int(np.argmax(spectrum)) * SAMPLE_RATE / len(samples) - 440) < 60
        started = time.monotonic()
        for _ in range(50):
            mic.read(960)  # faster than real time: padded, never waiting
        assert time.monotonic() - started < 0.5
    finally:
        mic.close()
    assert mic.read(960) == bytes(1920)  # nothing heard is kept after closing
    assert _runs(fake_audio, "arecord")[0][:9] == [
        "-q", "-t", "raw", "-f", "S16_LE", "-r", "48000", "-c", "1",
    ]  # fmt: skip


def test_a_microphone_giving_digital_silence_or_a_dead_recorder_has_level_zero(
    fake_audio: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RECORDER_MODE", "zeros")
    mic = PipeMicrophone()
    mic.open()
    try:
        time.sleep(0.3)
        assert mic.recording and mic.level() == 0.0
    finally:
        mic.close()
    monkeypatch.setenv("RECORDER_MODE", "die")
    mic = PipeMicrophone()
    mic.open()
    try:
        _until(lambda: not mic.recording)
        assert mic.level() == 0.0 and mic.read(10) == bytes(20)
        _until(lambda: "microphone stopped" in caplog.text)
    finally:
        mic.close()


def test_a_missing_recorder_is_logged_once_and_the_microphone_is_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mic = PipeMicrophone(recorder=["no-such-recorder-here"])
    mic.open()
    mic.close()
    mic.open()
    assert mic.level() == 0.0 and mic.read(4) == bytes(8)
    mic.close()
    assert caplog.text.count("no-such-recorder-here is not installed") == 1


def test_the_microphone_moves_to_a_new_input_while_open(fake_audio: Path) -> None:
    mic = PipeMicrophone(EC_SOURCE)
    mic.open()
    try:
        _until(lambda: mic.level() > 0.0)
        mic.set_input("plughw:3")
        _until(lambda: len(_runs(fake_audio, "arecord")) == 2)
        _until(lambda: mic.level() > 0.0)
    finally:
        mic.close()
    first, second = _runs(fake_audio, "arecord")
    assert first[-3:] == ["-D", EC_SOURCE, "-"] and second[-3:] == ["-D", "plughw:3", "-"]


def test_pipewire_records_with_pw_record_at_the_call_format() -> None:
    command = recorder_command("alsa_input.usb-headset", pipewire=True)
    assert command[0] == "pw-record" and command[-3:] == ["--target", "alsa_input.usb-headset", "-"]
    assert command[1:3] == ["--rate", "48000"] and "--channels" in command


# ---------------------------------------------------------------- routing

PW_DUMP = [
    {"id": 30, "type": "PipeWire:Interface:Device", "info": {"props": {"api.alsa.card": 3}}},
    {
        "id": 41,
        "type": "PipeWire:Interface:Node",
        "info": {"props": {"node.name": "alsa_output.platform-hdmi", "media.class": "Audio/Sink",
                           "api.alsa.card": 0}},
    },
    {
        "id": 42,
        "type": "PipeWire:Interface:Node",
        "info": {"props": {"node.name": "alsa_output.usb-Jabra-00.analog-stereo",
                           "media.class": "Audio/Sink", "api.alsa.card": 3}},
    },
    {
        "id": 43,
        "type": "PipeWire:Interface:Node",
        "info": {"props": {"node.name": "alsa_input.usb-Jabra-00.mono-fallback",
                           "media.class": "Audio/Source", "alsa.card": "3"}},
    },
    {"id": 44, "type": "PipeWire:Interface:Node",
     "info": {"props": {"node.name": EC_SINK, "media.class": "Audio/Sink"}}},
    {"id": 45, "type": "PipeWire:Interface:Node",
     "info": {"props": {"node.name": EC_SOURCE, "media.class": "Audio/Source"}}},
    {"id": 46, "type": "PipeWire:Interface:Node", "info": None},
    "junk",
]  # fmt: skip


def test_pw_dump_is_read_for_audio_nodes_and_their_cards_and_junk_is_ignored() -> None:
    nodes = parse_pw_dump(json.dumps(PW_DUMP))
    assert AudioNode("alsa_output.usb-Jabra-00.analog-stereo", "Audio/Sink", 3) in nodes
    assert AudioNode("alsa_input.usb-Jabra-00.mono-fallback", "Audio/Source", 3) in nodes
    assert AudioNode(EC_SINK, "Audio/Sink", None) in nodes
    assert len(nodes) == 5
    for bad in ("", "{", "[1, 2]", '{"a": 1}', '[{"type": "PipeWire:Interface:Node"}]'):
        assert parse_pw_dump(bad) == []


def test_with_pipewire_the_booth_uses_the_echo_cancelled_pair_and_a_headset_its_own_nodes() -> None:
    nodes = parse_pw_dump(json.dumps(PW_DUMP))
    router = AudioRouter(max_volume=9, headset_max_volume=6, pipewire=True, nodes=lambda: nodes)
    assert router.route(None) == Route(EC_SINK, EC_SOURCE, False, 9)
    assert router.route(3) == Route(
        "alsa_output.usb-Jabra-00.analog-stereo", "alsa_input.usb-Jabra-00.mono-fallback", True, 6
    )
    # Echo cancellation not set up: the defaults; a headset PipeWire has not listed yet: too.
    bare = AudioRouter(pipewire=True, nodes=lambda: nodes[:3])
    assert bare.route(None) == Route(None, None, False, 10)
    assert bare.route(5) == Route(None, None, True, 10)


def test_without_pipewire_a_headset_is_its_alsa_card_and_settings_are_kept() -> None:
    router = AudioRouter("plughw:1", "default", headset_max_volume=5, pipewire=False)
    assert router.route(None) == Route("plughw:1", None, False, 10)
    assert router.route(2) == Route("plughw:2", "plughw:2", True, 5)


def test_the_call_speaker_moves_to_the_headset_and_back_while_playing(fake_audio: Path) -> None:
    speaker = PipeSpeaker(volume=9, max_volume=10)
    speaker.open()
    try:
        speaker.play(bytes(1920))
        _until(lambda: len(_runs(fake_audio, "aplay")) == 1)
        speaker.set_output("plughw:3")
        speaker.set_max_volume(6)
        assert speaker.volume == 6  # a headset at the ear is capped lower
        speaker.play(bytes(1920))
        _until(lambda: len(_runs(fake_audio, "aplay")) == 2)
        assert speaker.playing
        speaker.set_output(None)
        _until(lambda: len(_runs(fake_audio, "aplay")) == 3)
    finally:
        speaker.close()
    first, headset, back = _runs(fake_audio, "aplay")
    assert "-D" not in first and headset[-3:] == ["-D", "plughw:3", "-"] and "-D" not in back


# ---------------------------------------------------------------- the booth routes


def _sim_config(tmp_path: Path) -> config.BoothConfig:
    return config.load(ROOT / "examples" / "demo-booth.toml")


@pytest.mark.parametrize("routed", [True, False], ids=["routed", "twin-not-routed"])
def test_prompts_and_call_audio_follow_a_headset_plugged_into_the_booth(
    fake_audio: Path, tmp_path: Path, routed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """udev says a headset (card 3) came: the prompts, the call speaker and the microphone
    move to it, with the headset volume cap; unplugged, they come back."""
    if not routed:

        async def unrouted(self: BoothRuntime) -> None:
            return None

        monkeypatch.setattr(BoothRuntime, "_apply_route", unrouted)

    async def scenario() -> tuple[list[list[str]], dict[str, object]]:
        runtime = BoothRuntime(_sim_config(tmp_path), simulate=True)
        runtime.prompts = PromptSpeaker()  # the real prompt speaker, as on a booth
        controller = await runtime.start()
        try:
            assert runtime.simulation is not None
            runtime.simulation.monitor.trigger_kind("add", DeviceKind.HEADSET)
            await asyncio.sleep(0.3)
            await controller.settle()
            assert controller.booth.headset
            await runtime.prompts.say("Hello", "en")
            seen = {
                "speaker": getattr(runtime.speaker, "output", None),
                "max_volume": getattr(runtime.speaker, "max_volume", None),
                "microphone": getattr(runtime.media.microphone if runtime.media else None,
                                      "input", None),
            }  # fmt: skip
            runtime.simulation.monitor.trigger_kind("remove", DeviceKind.HEADSET)
            await asyncio.sleep(0.3)
            await runtime.prompts.say("Hello", "en")
            return _runs(fake_audio, "aplay"), seen
        finally:
            await runtime.close()

    plays, seen = asyncio.run(scenario())
    assert len(plays) == 2
    if routed:
        assert plays[0][-3:] == ["-D", "plughw:3", "-"]
        assert seen == {"speaker": "plughw:3", "max_volume": 7, "microphone": "plughw:3"}
    else:
        assert "-D" not in plays[0]  # the twin: the prompt went to the booth's open speaker
        assert seen["speaker"] is None and seen["max_volume"] == 10
    assert "-D" not in plays[1]


def test_the_tone_helper_is_a_real_tone() -> None:
    """The fake recorder's tone is what the tests above listen for: 440 Hz, not silence."""
    n = np.arange(960)
    wave = (8000 * np.sin(2 * math.pi * 440 * n / 48000)).astype("<i2").tobytes()
    assert rms(wave) > 0.1
