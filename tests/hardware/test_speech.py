"""Spoken prompts: real espeak-ng voices, and a fake player that records what reached it."""

from __future__ import annotations

import array
import asyncio
import io
import logging
import math
import os
import shutil
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from hardware.speech import (
    VOICES,
    Speaker,
    espeak_command,
    pipewire_running,
    player_command,
    synthesize,
)
from kiosk import texts
from kiosk.errors import HardwareError
from kiosk.i18n import Translator

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed: apt-get install espeak-ng",
)

CONFIG = {"emergency_number": "911", "crisis_number": "988"}
STAFF = {"en": "library staff", "es": "el personal de la biblioteca"}
PROMPT = "Please close the door."

# A stand-in for aplay: reads the WAV from stdin, notes what came, then plays
# on (sleeps) if the test left a "hang-once" flag for it, so it can be cut off.
FAKE_PLAYER = """\
import os, sys, time
from pathlib import Path
out = Path(sys.argv[1])
data = sys.stdin.buffer.read()
try:
    os.remove(out / "hang-once")
    hang = True
except FileNotFoundError:
    hang = False
tmp = out / f"{os.getpid()}.tmp"
tmp.write_text(f"{len(data)} {data[:4].decode('latin-1')} {data[8:12].decode('latin-1')}")
os.replace(tmp, out / f"{os.getpid()}.got")
if hang:
    time.sleep(60)
(out / f"{os.getpid()}.finished").touch()
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def prompt(language: str) -> str:
    """The emergency prompt as the booth says it, from the real catalogs."""
    t = Translator(language, staff=STAFF[language], **CONFIG)
    return t.spoken(texts.EMERGENCY.spoken)


@pytest.fixture
def player(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_player.py"
    script.write_text(FAKE_PLAYER)
    (tmp_path / "out").mkdir()
    return [sys.executable, str(script), str(tmp_path / "out")]


def received(player: list[str]) -> dict[int, tuple[int, str, str]]:
    """What each fake player run got: pid -> (byte count, RIFF tag, WAVE tag)."""
    out = Path(player[2])
    got = {}
    for path in out.glob("*.got"):
        count, riff, wave_tag = path.read_text().split(" ")
        got[int(path.stem)] = (int(count), riff, wave_tag)
    return got


def finished(player: list[str]) -> set[int]:
    return {int(p.stem) for p in Path(player[2]).glob("*.finished")}


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def speech_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hardware.speech"]


# ---------------------------------------------------------------- real voices


@needs_espeak
@pytest.mark.parametrize("language", ["en", "es"])
def test_real_espeak_speaks_each_language_audibly(language: str) -> None:
    wav = synthesize(prompt(language), language)
    with wave.open(io.BytesIO(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        seconds = w.getnframes() / w.getframerate()
        samples = array.array("h", w.readframes(w.getnframes()))
    assert len(samples) == w.getnframes()  # the sizes in the header are the true ones
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    assert seconds > 3
    assert rms > 500, f"{language} prompt is nearly silent (RMS {rms:.0f})"


@needs_espeak
def test_each_language_has_an_installed_voice() -> None:
    for language in VOICES:
        assert synthesize("9 1 1", language)


def test_numbers_are_spoken_digit_by_digit() -> None:
    assert "9 1 1" in prompt("en") and "9 8 8" in prompt("en")
    assert "911" not in prompt("es") and "9 1 1" in prompt("es")


def test_the_text_goes_through_stdin_as_utf8() -> None:
    command = espeak_command("es")
    assert command[:3] == ["espeak-ng", "-v", "es-419"]
    assert {"--stdin", "--stdout"} <= set(command)
    assert command[command.index("-b") + 1] == "1"  # UTF-8 even under the C locale of a service


def test_synthesize_without_espeak_raises_a_hardware_error(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="espeak-ng"):
        synthesize(PROMPT, "en", espeak=str(tmp_path / "no-espeak"))


# ---------------------------------------------------------------- the player


def test_player_command_follows_the_output_device() -> None:
    assert player_command(None, pipewire=False) == ["aplay", "-q", "-"]
    assert player_command("plughw:1,0", pipewire=False) == ["aplay", "-q", "-D", "plughw:1,0", "-"]
    assert player_command(None, pipewire=True) == ["pw-play", "-"]
    assert player_command("headset", pipewire=True) == ["pw-play", "--target", "headset", "-"]


def test_pipewire_is_used_only_when_its_socket_and_pw_play_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert not pipewire_running()
    (tmp_path / "pipewire-0").touch()
    assert pipewire_running()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert not pipewire_running()


@needs_espeak
def test_speaker_pipes_the_wav_to_the_player(player: list[str]) -> None:
    speaker = Speaker(player=player)
    asyncio.run(speaker.say(prompt("es"), "es"))
    assert list(received(player).values()) == [
        (len(synthesize(prompt("es"), "es")), "RIFF", "WAVE")
    ]
    assert not speaker.speaking


@needs_espeak
def test_a_new_prompt_cuts_off_the_one_still_speaking(player: list[str]) -> None:
    async def scenario() -> tuple[int, int]:
        speaker = Speaker(player=player)
        Path(player[2], "hang-once").touch()
        first = asyncio.create_task(speaker.say(prompt("en"), "en"))
        await until(lambda: len(received(player)) == 1)
        (first_pid,) = received(player)
        assert speaker.speaking
        await asyncio.wait_for(speaker.say(PROMPT, "en"), 10)
        assert first.done() and first.result() is None  # cut off quietly, not failed
        assert not speaker.speaking
        (second_pid,) = set(received(player)) - {first_pid}
        return first_pid, second_pid

    first_pid, second_pid = asyncio.run(scenario())
    assert gone(first_pid)
    assert finished(player) == {second_pid}  # the first player never got to finish
    assert received(player)[second_pid][0] == len(synthesize(PROMPT, "en"))


@needs_espeak
def test_stop_and_cancel_leave_nothing_speaking(player: list[str]) -> None:
    async def scenario() -> list[int]:
        speaker = Speaker(player=player)
        Path(player[2], "hang-once").touch()
        task = asyncio.create_task(speaker.say(PROMPT, "en"))
        await until(lambda: len(received(player)) == 1)
        await asyncio.wait_for(speaker.stop(), 10)
        assert not speaker.speaking
        await task

        Path(player[2], "hang-once").touch()
        task = asyncio.create_task(speaker.say(PROMPT, "es"))
        await until(lambda: len(received(player)) == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not speaker.speaking
        return list(received(player))

    pids = asyncio.run(scenario())
    assert all(gone(pid) for pid in pids)
    assert finished(player) == set()


def test_missing_espeak_is_logged_once_then_speech_is_quiet(
    player: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    speaker = Speaker(player=player, espeak=str(tmp_path / "no-espeak-ng"))

    async def scenario() -> None:
        for _ in range(3):
            await speaker.say(PROMPT, "en")

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    (record,) = speech_records(caplog)
    assert "not installed" in record.getMessage()
    assert received(player) == {}
    assert PROMPT not in caplog.text


def test_missing_player_is_logged_once_then_speech_is_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    speaker = Speaker(player=[str(tmp_path / "no-player"), "-"])

    async def scenario() -> None:
        for _ in range(3):
            await speaker.say(PROMPT, "en")

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert len(speech_records(caplog)) == 1
    assert "not installed" in caplog.text
    assert not speaker.speaking


@needs_espeak
def test_a_failing_player_is_logged_once_without_the_text(
    player: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    speaker = Speaker(player=[*player, "3"])

    async def scenario() -> None:
        await speaker.say(PROMPT, "en")
        await speaker.say(PROMPT, "en")

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    (record,) = speech_records(caplog)
    assert "status 3" in record.getMessage()
    assert len(received(player)) == 2
    assert PROMPT not in caplog.text and "close the door" not in caplog.text.lower()


def test_a_language_without_a_voice_is_logged_once_and_skipped(
    player: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    speaker = Speaker(player=player)

    async def scenario() -> None:
        await speaker.say(PROMPT, "fr")
        await speaker.say(PROMPT, "fr")
        await speaker.say("", "en")  # nothing to say: no processes at all

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert len(speech_records(caplog)) == 1
    assert received(player) == {}
