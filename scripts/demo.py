"""Narrated demo: run the headless booth simulator through a scripted visit.

Each command from examples/demo-scenario.txt is shown, sent to the booth,
and what the booth did in answer (its JSON lines) is printed beneath it.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "examples" / "demo-scenario.txt"
CONFIG = ROOT / "examples" / "demo-booth.toml"
BOOTH = ROOT / ".venv" / "bin" / "telehealth-kiosk"

BOLD, DIM, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 4
)

INTRO = f"""{BOLD}Telehealth booth: simulated hardware, headless{RESET}

The booth below runs its real code: configuration, the visit state machine,
the controller and the gpiozero door sensor, emergency button, lights and
buzzer on gpiozero's MockFactory pins. Commands press those pins the way a
resident would. Each line the booth prints is JSON: a state change or an
effect it carried out (lights, alarm, call engine, timers).
The scenario is {SCENARIO.relative_to(ROOT)}; the commands are in docs/simulator.md.
"""


def show(line: str) -> None:
    try:
        msg = json.loads(line)
    except json.JSONDecodeError:
        print(f"      {line}")
        return
    kind = msg.get("type")
    if kind == "state":
        print(f"      {BOLD}state{RESET}  {msg['previous']} -> {BOLD}{msg['state']}{RESET}")
    elif kind == "effect":
        detail = f" ({msg['detail']})" if "detail" in msg else ""
        colour = RED if msg["effect"].startswith("alarm") else ""
        print(f"      {colour}effect {msg['effect']}{detail}{RESET}")
    elif kind == "error":
        print(f"      {RED}error  {msg['error']}{RESET}")
    else:
        print(f"      {DIM}{line}{RESET}")


class Reader:
    """Lines from the booth's stdout, read unbuffered so select() sees every one."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.pending = b""
        self.closed = False

    def drain(self, quiet: float) -> None:
        """Print what the booth says until it has been quiet for ``quiet`` seconds."""
        deadline = time.monotonic() + quiet
        while not self.closed and time.monotonic() < deadline:
            if not self.sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.closed = True
            self.pending += chunk
            *lines, self.pending = self.pending.split(b"\n")
            for line in lines:
                show(line.decode("utf-8", "replace"))
            deadline = time.monotonic() + quiet


def start_booth(config: Path) -> tuple[subprocess.Popen[bytes], Reader]:
    env = dict(os.environ, KIOSK_HARDWARE="sim")
    proc = subprocess.Popen(
        [str(BOOTH), "--simulate", "--headless", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    return proc, Reader(proc)


def send(proc: subprocess.Popen[bytes], command: str) -> None:
    assert proc.stdin is not None
    print(f"  {DIM}>{RESET} {command}")
    proc.stdin.write(command.encode() + b"\n")
    proc.stdin.flush()


def scripted() -> int:
    """The narrated visit, on a booth alone: the hub's part is played by commands."""
    proc, reader = start_booth(CONFIG)
    reader.drain(1.0)
    for raw in SCENARIO.read_text().splitlines():
        if raw.startswith("##"):
            print(f"\n{BOLD}{raw.lstrip('# ')}{RESET}")
            continue
        command = raw.split("#", 1)[0].strip()
        if not command:
            continue
        send(proc, command)
        if command == "quit":
            break
        wait = float(command.split()[1]) if command.startswith("wait ") else 0.0
        reader.drain(wait + 0.3)
    assert proc.stdin is not None
    proc.stdin.close()
    reader.drain(1.0)
    code = proc.wait(timeout=10)
    print(f"\nThe booth stopped with exit code {code}.")
    return code


def with_the_hub(config: Path) -> int:
    """A booth connected to the real hub waits for a clinician to answer in a browser."""
    print(f"\n{BOLD}Now a real call: a booth connected to the hub waits for a clinician{RESET}")
    proc, reader = start_booth(config)
    reader.drain(1.5)
    for command in ("touch start", "touch accept", "touch walk_in", "touch devices_ok"):
        send(proc, command)
        reader.drain(0.3)
    port = os.environ.get("DEMO_HUB_PORT", "8443")
    print(
        f"\n{BOLD}The booth is waiting.{RESET} Open https://localhost:{port}/ in a browser on "
        "this computer,\nsign in as demo / demo-clinician-1 and answer it. "
        "Stop with Ctrl+C.\n"
    )
    try:
        while proc.poll() is None and not reader.closed:
            reader.drain(3600)
    except KeyboardInterrupt:
        pass
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return 1


def main() -> int:
    hub_config = None
    if sys.argv[1:2] == ["--config"] and len(sys.argv) > 2:
        hub_config = Path(sys.argv[2]).resolve()
    print(INTRO)
    booth = ".venv/bin/telehealth-kiosk --simulate --headless"
    print(f"Run it yourself:\n  {booth} --config {CONFIG.relative_to(ROOT)}\n")
    code = scripted()
    if code != 0 or hub_config is None:
        return code
    if not sys.stdin.isatty():
        print(
            "\nTo place a real call to the console, run the booth connected to the hub:\n"
            f"  {booth} --config {hub_config}"
        )
        return 0
    return with_the_hub(hub_config)


if __name__ == "__main__":
    sys.exit(main())
