"""``telehealth-kiosk``: start the booth.

Exit codes: 0 after a clean stop, 2 for a bad command line or configuration,
3 when the hardware cannot be opened. Errors are printed as plain lines for
the technician; no traceback reaches them.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from kiosk import __version__, config, logs
from kiosk.errors import ConfigError, HardwareError

EXIT_CONFIG = 2


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


EXIT_HARDWARE = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="telehealth-kiosk",
        description="Community telehealth booth: a private video visit with a clinician.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=config.DEFAULT_PATH,
        metavar="PATH",
        help=f"booth configuration (default {config.DEFAULT_PATH})",
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="simulated hardware (gpiozero MockFactory, fake udev); same as KIOSK_HARDWARE=sim",
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="no window: simulator commands on stdin, JSON lines out (docs/simulator.md)",
    )
    p.add_argument(
        "--safe-mode",
        action="store_true",
        help="out of service with 911/988 guidance; only the emergency path runs",
    )
    p.add_argument("--version", action="version", version=f"telehealth-kiosk {__version__}")
    return p


async def _serve(args: argparse.Namespace, cfg: config.BoothConfig, credential: str | None) -> int:
    from kiosk.app import BoothRuntime

    runtime = BoothRuntime(
        cfg, simulate=args.simulate, safe_mode=args.safe_mode, credential=credential
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.request_stop, sig.name.lower())
    try:
        await runtime.start()
        if args.headless:
            if not runtime.simulated:
                print(
                    "telehealth-kiosk: --headless needs simulated hardware; add --simulate",
                    file=sys.stderr,
                )
                return EXIT_CONFIG
            from kiosk import simulator

            await simulator.run(runtime, simulator.stdin_lines(loop), sys.stdout)
        else:
            await _window(runtime, cfg)
    except HardwareError as exc:
        print(f"telehealth-kiosk: {exc}", file=sys.stderr)
        return EXIT_HARDWARE
    finally:
        await runtime.close()
    return 0


async def _window(runtime: object, cfg: config.BoothConfig) -> None:
    """The touchscreen, on this loop; on a laptop with the simulator's panel beside it."""
    from kiosk.app import BoothRuntime

    assert isinstance(runtime, BoothRuntime) and runtime.controller is not None
    from kiosk.ui import boot

    extra = 260 if runtime.simulated else 0
    _software_rendering_settings()
    boot.configure(cfg.display, window=True, simulate=runtime.simulated, extra_width=extra)
    from hardware.speech import Speaker
    from kiosk.ui.app import BoothApp, run_app

    on_volume = runtime.speaker.set_volume if runtime.speaker is not None else None
    app = BoothApp(
        runtime.controller,
        speaker=runtime.prompts or Speaker(),  # a booth's prompts follow the headset
        runtime=runtime,
        remote=runtime.call,
        on_volume=on_volume,
    )
    await run_app(app, runtime.stopped_event)


def _software_rendering_settings() -> None:
    """Kivy's settings for a machine without a GPU, set before Kivy is first imported.

    With no render node (``/dev/dri/renderD*``) Mesa draws on the CPU
    (llvmpipe). Kivy asks for 2x multisampling by default, and llvmpipe then
    shades every sample and resolves the whole window at each swap: measured
    with ``tests/perf/bench_call.py``'s call screen, about 50 ms of CPU a
    frame with it and a third of that without, and some 20 MiB less memory.
    Edges of rounded buttons are a little less smooth. A booth's GPU keeps
    Kivy's default.
    """
    import os

    if not any(Path("/dev/dri").glob("renderD*")):
        os.environ.setdefault("KCFG_GRAPHICS_MULTISAMPLES", "0")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure_logging()
    if not args.headless and args.simulate and not _has_display():
        print(
            "telehealth-kiosk: no display to open the booth's window on. Run it under a "
            "virtual one:\n  xvfb-run -a -s '-screen 0 1280x1024x24' telehealth-kiosk "
            f"--simulate --config {args.config}\nor without a window:\n  telehealth-kiosk "
            f"--simulate --headless --config {args.config}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        cfg = config.load(args.config)
        credential = config.read_credential(cfg.hub)
    except ConfigError as exc:
        logs.log_event("config_invalid", problems=len(exc.problems))
        for line in config.problem_report(exc):
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    try:
        return asyncio.run(_serve(args, cfg, credential))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
