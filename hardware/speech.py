"""Spoken prompts through espeak-ng, for residents who cannot read the screen.

espeak-ng writes a WAV stream into a pipe and the player reads the other
end: ``aplay`` (alsa-utils), or ``pw-play`` when PipeWire is running. Audio
never touches the disk. Each prompt is what the screen shows *now*, so a new
prompt kills the one still speaking rather than queueing behind it.

Speech helps but is never needed: if espeak-ng or the player is missing the
:class:`Speaker` says so once in the log and stays quiet from then on, and
nothing here raises into the booth. Prompts are fixed booth text with
configuration values, yet the text is still never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import struct
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kiosk.errors import HardwareError

__all__ = [
    "RATE_WPM",
    "VOICES",
    "Speaker",
    "espeak_command",
    "pipewire_running",
    "player_command",
    "synthesize",
]

_log = logging.getLogger(__name__)

VOICES: Final[Mapping[str, str]] = {"en": "en-us", "es": "es-419"}
"""espeak-ng voice per booth language (``espeak-ng --voices`` lists them)."""

RATE_WPM: Final = 150
"""A little slower than espeak's 175 words a minute: easier for anxious or new listeners."""

ESPEAK: Final = "espeak-ng"


def espeak_command(language: str, *, espeak: str = ESPEAK, rate: int = RATE_WPM) -> list[str]:
    """espeak-ng reading UTF-8 text on stdin (whatever the service's locale) to WAV on stdout.

    The text goes through stdin, not argv: no other process can read it from
    ``/proc`` and a prompt can never be taken for an option.
    """
    voice = VOICES.get(language)
    if voice is None:
        raise ValueError(f"language must be one of {', '.join(VOICES)}, not {language!r}")
    return [espeak, "-v", voice, "-s", str(rate), "-b", "1", "--stdin", "--stdout"]


def pipewire_running() -> bool:
    """True when a PipeWire server is up for this user and ``pw-play`` is installed."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime or not Path(runtime, "pipewire-0").exists():
        return False
    return shutil.which("pw-play") is not None


def player_command(output: str | None = None, *, pipewire: bool | None = None) -> list[str]:
    """The player reading WAV on stdin; ``output`` is the device (a headset takes over)."""
    if pipewire if pipewire is not None else pipewire_running():
        return ["pw-play", *(["--target", output] if output else []), "-"]
    return ["aplay", "-q", *(["-D", output] if output else []), "-"]


def _fix_wav_sizes(wav: bytes) -> bytes:
    """Write the true sizes into a WAV espeak streamed (it cannot seek back in a pipe)."""
    if len(wav) < 12 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        return wav
    out = bytearray(wav)
    struct.pack_into("<I", out, 4, len(out) - 8)
    pos = 12
    while pos + 8 <= len(out):
        chunk, size = out[pos : pos + 4], struct.unpack_from("<I", out, pos + 4)[0]
        if chunk == b"data":
            struct.pack_into("<I", out, pos + 4, len(out) - pos - 8)
            break
        pos += 8 + size + (size & 1)
    return bytes(out)


def synthesize(text: str, language: str, *, espeak: str = ESPEAK, rate: int = RATE_WPM) -> bytes:
    """The WAV bytes of ``text`` spoken in ``language``. Blocking: for tests and tools."""
    try:
        done = subprocess.run(
            espeak_command(language, espeak=espeak, rate=rate),
            input=text.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError as exc:
        raise HardwareError(
            f"speech: {espeak} is not installed (Debian package espeak-ng)"
        ) from exc
    if done.returncode != 0:
        raise HardwareError(f"speech: {espeak} failed with exit status {done.returncode}")
    return _fix_wav_sizes(done.stdout)


@dataclass
class _Prompt:
    synth: asyncio.subprocess.Process
    player: asyncio.subprocess.Process
    interrupted: bool = False

    def kill(self) -> None:
        self.interrupted = True
        for proc in (self.synth, self.player):
            if proc.returncode is None:
                with suppress(ProcessLookupError):
                    proc.kill()


class Speaker:
    """Says one prompt at a time; a new prompt (or :meth:`stop`) cuts off the old one.

    ``output`` is the audio device for the player (``aplay -D`` / ``pw-play
    --target``), None for the default; set it when a headset comes or goes.
    ``player`` replaces the whole player command (it must read WAV on stdin).
    """

    def __init__(
        self,
        output: str | None = None,
        *,
        player: Sequence[str] | None = None,
        espeak: str = ESPEAK,
        rate: int = RATE_WPM,
    ) -> None:
        self.output = output
        self._player = list(player) if player is not None else None
        self._espeak = espeak
        self._rate = rate
        self._lock = asyncio.Lock()
        self._generation = 0
        self._current: _Prompt | None = None
        self._told: set[str] = set()

    @property
    def speaking(self) -> bool:
        return self._current is not None

    def _once(self, key: str, message: str, *args: object) -> None:
        """Log a problem the first time only: a missing voice is not news at every prompt."""
        if key not in self._told:
            self._told.add(key)
            _log.warning(message, *args)

    def _kill(self) -> None:
        if self._current is not None:
            self._current.kill()

    async def stop(self) -> None:
        """Silence the booth now (a call starts, the visit is wiped); returns once it is quiet."""
        self._generation += 1
        self._kill()
        async with self._lock:
            pass

    async def say(self, text: str, language: str) -> None:
        """Speak ``text``; returns when it has been said or was cut off. Never raises."""
        self._generation += 1
        mine = self._generation
        self._kill()
        async with self._lock:
            if mine != self._generation:
                return  # a newer prompt came while the old one was being stopped
            try:
                await self._speak(text, language, mine)
            except (OSError, ValueError) as exc:
                self._once(f"error:{type(exc).__name__}", "speech failed: %s", type(exc).__name__)

    async def _speak(self, text: str, language: str, mine: int) -> None:
        if not text.strip():
            return  # a screen with nothing to say
        if language not in VOICES:
            self._once(f"voice:{language}", "speech: no espeak-ng voice for this language")
            return
        synth_cmd = espeak_command(language, espeak=self._espeak, rate=self._rate)
        player_cmd = self._player or player_command(self.output)
        for program in (synth_cmd[0], player_cmd[0]):
            if shutil.which(program) is None:
                self._once(f"missing:{program}", "speech is off: %s is not installed", program)
                return
        prompt = await self._start(synth_cmd, player_cmd)
        self._current = prompt
        try:
            if mine != self._generation:
                prompt.kill()  # superseded while starting
            assert prompt.synth.stdin is not None
            with suppress(BrokenPipeError, ConnectionResetError):
                prompt.synth.stdin.write(text.encode())
                await prompt.synth.stdin.drain()
            prompt.synth.stdin.close()
            await asyncio.gather(prompt.synth.wait(), prompt.player.wait())
        finally:
            if prompt.synth.returncode is None or prompt.player.returncode is None:
                prompt.kill()  # cancelled: leave nothing speaking behind
            await prompt.synth.wait()
            await prompt.player.wait()
            self._current = None
        if not prompt.interrupted:
            for name, proc in (("espeak-ng", prompt.synth), ("player", prompt.player)):
                if proc.returncode:
                    self._once(
                        f"status:{name}", "speech: %s exited with status %s", name, proc.returncode
                    )

    async def _start(self, synth_cmd: list[str], player_cmd: list[str]) -> _Prompt:
        """Start both ends of the pipe; the WAV flows between them without passing through us."""
        read_end, write_end = os.pipe()
        try:
            player = await asyncio.create_subprocess_exec(
                *player_cmd,
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                synth = await asyncio.create_subprocess_exec(
                    *synth_cmd,
                    stdin=subprocess.PIPE,
                    stdout=write_end,
                    stderr=subprocess.DEVNULL,
                )
            except BaseException:
                with suppress(ProcessLookupError):
                    player.kill()
                await player.wait()
                raise
        finally:
            os.close(read_end)
            os.close(write_end)
        return _Prompt(synth, player)
