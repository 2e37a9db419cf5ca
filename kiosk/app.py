"""Assembles a running booth: hardware backends, the controller, systemd.

``--simulate`` (or ``KIOSK_HARDWARE=sim``, or ``backend = "sim"`` in the
config) picks the simulated twins: gpiozero's own ``MockFactory`` under the
real GPIO code, and a pipe-backed udev monitor. Nothing else changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clinic.protocol import AlertKind
from hardware import udev
from hardware.audio import (
    EC_SINK,
    AudioRouter,
    Microphone,
    PipeMicrophone,
    PipeSpeaker,
    Route,
    SimulatedMicrophone,
    SimulatedSpeaker,
    Speaker,
)
from hardware.camera import (
    Camera,
    CameraSocket,
    HotplugCamera,
    TestCard,
    list_video_devices,
    make_camera,
    usb_camera_node,
)
from hardware.events import DeviceAdded, DeviceKind, DeviceRemoved, HardwareEvent, HardwareFault
from hardware.gpio import BoothGpio, SimulatedWiring, make_mock_factory
from hardware.health import DeviceWatch
from hardware.speech import Speaker as PromptSpeaker
from hardware.systemd import Notifier, Watchdog, watchdog_interval
from kiosk import __version__, logs
from kiosk.bundles import StagedBundles
from kiosk.call.hub_link import HubLink
from kiosk.call.outbox import FILE_NAME as OUTBOX_NAME
from kiosk.call.outbox import OutboxFile
from kiosk.call.threaded import ThreadedCallEngine
from kiosk.config import Backend, BoothConfig
from kiosk.controller import Controller
from kiosk.errors import HardwareError
from kiosk.link_health import LinkHealth
from kiosk.media import LocalMedia
from kiosk.presence import summary
from kiosk.session import Booth, State, UpdateHold, initial
from provisioning.update.booth_status import BoothStatus, write_status

_log = logging.getLogger(__name__)
STOP_DEADLINE = 4.0
STATUS_FILE = "status.json"
UPDATE_HOLD = Path("/run/telehealth-kiosk-update/update-hold")
"""Written by the updater in its own run folder: hold new visits off, a release is coming.
``UPDATE_HOLD_FILE`` overrides it (tests)."""
HOLD_MAX_AGE = 600.0
UPDATES_CHECK = 300.0
"""Seconds between looks at the updater's state for "updates impossible for days"."""
UPDATE_STATE = Path("/var/lib/telehealth-kiosk-update/state.json")
"""The updater's state file (readable by the booth); ``UPDATE_STATE_FILE`` overrides it."""
ALERTED_FILE = "updates-alerted"
"""Seconds after which a hold the updater left behind (it crashed) no longer holds the booth."""
WATCH_INTERVAL = 0.5
"""Seconds between looks at what the open camera and microphone deliver."""
STATUS_INTERVAL = 1.0
"""Seconds between checks of the status file the updater reads (written only on change)."""


def pick_backend(config: BoothConfig, simulate: bool) -> Backend:
    """Command line beats environment beats config file."""
    if simulate:
        return Backend.SIM
    env = os.environ.get("KIOSK_HARDWARE", "").strip().lower()
    if env in ("sim", "pi"):
        return Backend(env)
    return config.hardware.backend


@dataclass
class Simulation:
    """The simulator's hands on the simulated hardware."""

    wiring: SimulatedWiring
    monitor: udev.FakeMonitor
    camera: CameraSocket
    microphone: SimulatedMicrophone


class BoothRuntime:
    """One booth on one event loop: start, run until asked to stop, stop within seconds."""

    def __init__(
        self,
        config: BoothConfig,
        *,
        simulate: bool = False,
        safe_mode: bool = False,
        credential: str | None = None,
    ) -> None:
        self.config = config
        self.credential = credential
        self.backend = pick_backend(config, simulate)
        self.safe_mode = safe_mode
        self.notifier = Notifier()
        self.gpio: BoothGpio | None = None
        self.watcher: udev.HotplugWatcher | None = None
        self.watchdog: Watchdog | None = None
        self.simulation: Simulation | None = None
        self.controller: Controller | None = None
        self.media: LocalMedia | None = None
        self.speaker: Speaker | None = None
        self.prompts: PromptSpeaker | None = None
        """Spoken prompts; routed with the call audio (a headset takes both)."""
        self.router: AudioRouter | None = None
        self.route: Route | None = None
        self.watch: DeviceWatch | None = None
        self._headset_card: int | None = None
        self.bundles: StagedBundles | None = None
        self._ready = False
        self._welcomed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.link: HubLink | None = None
        self.call: ThreadedCallEngine | None = None
        """The call engine, when the booth has a hub credential (``[hub] credential_file``)."""
        self.health: LinkHealth | None = None
        self._presence_tasks: set[asyncio.Task[None]] = set()
        self._run_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> Controller:
        """Open hardware, start the controller, tell systemd we are ready."""
        loop = asyncio.get_running_loop()
        logs.log_event(
            "booth_started",
            version=__version__,
            backend=self.backend.value,
            simulate=self.simulated,
        )
        booth = initial(self.config.site.default_language)
        audio = self.config.hardware.audio
        self.router = AudioRouter(
            audio.speaker,
            audio.microphone,
            max_volume=audio.max_volume,
            headset_max_volume=audio.headset_max_volume,
            pipewire=False if self.simulated else None,
        )
        microphone: Microphone
        if self.simulated:
            socket = CameraSocket(TestCard)
            camera: Camera | None = HotplugCamera(socket.camera, socket.camera())
            microphone = SimulatedMicrophone()
            self.speaker = SimulatedSpeaker(audio.volume, max_volume=audio.max_volume)
        else:
            socket = None
            camera = await self._camera()
            microphone = PipeMicrophone()
            self.speaker = PipeSpeaker(volume=audio.volume, max_volume=audio.max_volume)
            self.prompts = PromptSpeaker()
        devices = LocalMedia(camera, microphone)
        controller = Controller(self.config, _LateOutputs(self), booth=booth, devices=devices)
        self.bundles = StagedBundles(controller.post)
        controller.bundles = self.bundles
        self.bundles.at_start()
        if camera is None or (isinstance(camera, HotplugCamera) and not camera.present):
            controller.booth = replace(
                controller.booth, missing=controller.booth.missing | {DeviceKind.CAMERA}
            )
        self.media = devices
        self.controller = controller
        if self.credential is not None:
            self._connect_hub(controller, devices, self.credential)
        else:
            logs.log_event("hub_not_configured")
        self._run_task = asyncio.create_task(controller.run())
        controller.state_listeners.append(self._on_state)

        factory = make_mock_factory(self.config.hardware) if self.simulated else None
        self.gpio = BoothGpio(self.config.hardware, controller.post, loop, pin_factory=factory)
        self.gpio.start()

        if self.simulated:
            assert factory is not None and socket is not None
            assert isinstance(microphone, SimulatedMicrophone)
            monitor = udev.FakeMonitor()
            wiring = SimulatedWiring(factory, self.config.hardware)
            self.simulation = Simulation(wiring, monitor, socket, microphone)
            self.watcher = udev.HotplugWatcher(monitor, self._on_device_event, loop)
        else:
            self._seed_devices(controller)
            try:
                self.watcher = udev.HotplugWatcher.for_system(self._on_device_event, loop)
            except HardwareError as exc:
                _log.warning("%s", exc)
        await self._apply_route()
        self.watch = DeviceWatch(devices.preview, devices.level)
        self._spawn(self._watch_devices())
        if self.watcher is not None:
            self.watcher.start()

        if self.safe_mode:
            controller.post(HardwareFault("booth", "safe_mode"))
        interval = watchdog_interval()
        if interval is not None:
            self.watchdog = Watchdog(
                self.notifier, interval, loop, healthy=lambda: controller.healthy
            )
            self.watchdog.start()
        if self.link is not None:
            await self.link.set_presence(*summary(controller.booth))
        await controller.settle()
        self.notifier.ready(f"{controller.booth.state.value}")
        self._ready = True
        self._spawn(self._report_status())
        self._spawn(self._watch_updates())
        return controller

    def status(self) -> BoothStatus:
        """What the updater needs to know: busy or idle, and whether this release came up well.

        The self-check passes once the booth is ready and, if it has a hub,
        the hub has welcomed it: a release that cannot reach its clinicians
        is not healthy. Safe mode always fails it.
        """
        booth = self.controller.booth if self.controller is not None else None
        if booth is None or not self._ready:
            activity = "starting"
        elif booth.emergency:
            activity = "emergency"
        elif booth.state is State.TECHNICIAN:
            activity = "technician"
        elif booth.in_visit or booth.door_open:
            activity = "visit"
        elif booth.updating:
            activity = "held"
        else:
            activity = "idle"
        if self.safe_mode or (self.controller is not None and not self.controller.healthy):
            check = "fail"
        elif self._ready and (self.link is None or self._welcomed):
            check = "pass"
        else:
            check = "pending"
        return BoothStatus(__version__, activity, self._ready, check)

    async def _watch_updates(self, first: float = 60.0) -> None:
        """Tell staff, through the hub, when the updater has been unable to update for days.

        TUF can see that updates are blocked (a frozen mirror, a wrong clock) but
        cannot prevent it; people can. One alert for each run of failures (named
        by when it began), remembered in the state folder across restarts.
        """
        path = Path(os.environ.get("UPDATE_STATE_FILE") or UPDATE_STATE)
        state_dir = os.environ.get("STATE_DIRECTORY")
        alerted = Path(state_dir.split(":")[0]) / ALERTED_FILE if state_dir else None
        await asyncio.sleep(first)
        while not self._stopped.is_set():
            since = _blocked_since(path)
            if since is not None and self.link is not None:
                before = _read_small(alerted) if alerted is not None else None
                if before != since:
                    self.link.alert(AlertKind.UPDATES_BLOCKED.value)
                    logs.log_event("updates_blocked")
                    if alerted is not None:
                        await asyncio.to_thread(_write_small, alerted, since)
            await asyncio.sleep(UPDATES_CHECK)

    def _follow_hold(self, hold: Path) -> None:
        """Ask the visit to hold (again, until it can) while the updater's hold file stands."""
        controller = self.controller
        if controller is None:
            return
        try:
            age = time.time() - hold.stat().st_mtime
            wanted = age < HOLD_MAX_AGE
        except OSError:
            wanted = False
        if wanted != controller.booth.updating:
            controller.post(UpdateHold(wanted))

    async def _report_status(self) -> None:
        """Keep ``$RUNTIME_DIRECTORY/status.json`` true (systemd's RuntimeDirectory=)."""
        folder = os.environ.get("RUNTIME_DIRECTORY")
        if not folder:
            return  # not run by systemd: no updater is watching
        path = Path(folder.split(":")[0]) / STATUS_FILE
        last: BoothStatus | None = None
        while True:
            if self.link is not None and self.link.connected:
                self._welcomed = True
            self._follow_hold(Path(os.environ.get("UPDATE_HOLD_FILE") or UPDATE_HOLD))
            now = self.status()
            if now != last:
                try:
                    await asyncio.to_thread(write_status, path, now)
                    last = now
                except OSError as exc:
                    _log.warning("status file not written (%s)", type(exc).__name__)
            if self._stopped.is_set():
                return
            await asyncio.sleep(STATUS_INTERVAL)

    async def _camera(self) -> Camera | None:
        """The configured camera (``[hardware] camera``); asking libcamera takes a while.

        A USB camera (or none yet, under ``auto``) is wrapped for hot-plug: one
        knocked loose and plugged back gives video again without a restart. A
        Pi camera on its ribbon cable cannot be hot-plugged.
        """
        choice = self.config.hardware.camera.value
        camera = await asyncio.to_thread(make_camera, choice)
        if camera is None:
            logs.log_event("camera_missing", choice=choice)
        if choice in ("usb", "auto") and (camera is None or type(camera).__name__ == "UsbCamera"):
            return HotplugCamera(_usb_camera, camera)
        return camera

    # ------------------------------------------------------------ hot-plug and routing

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_device_event(self, event: HardwareEvent) -> None:
        """udev news: the camera is rebuilt and the audio re-routed before the visit hears of it."""
        controller = self.controller
        assert controller is not None
        camera = self.media.camera if self.media is not None else None
        if isinstance(event, DeviceAdded | DeviceRemoved):
            added = isinstance(event, DeviceAdded)
            if event.kind is DeviceKind.HEADSET:
                if added:
                    self._headset_card = event.card if event.card is not None else -1
                elif event.card is None or event.card == self._headset_card:
                    self._headset_card = None
                self._spawn(self._apply_route())
            elif event.kind is DeviceKind.STORAGE and added and self.bundles is not None:
                self._spawn(self.bundles.after_insert())
            elif event.kind is DeviceKind.CAMERA and isinstance(camera, HotplugCamera):
                if isinstance(event, DeviceAdded):
                    self._spawn(self._replug(camera, event))
                    return
                camera.unplugged()
        controller.post(event)

    async def _replug(self, camera: HotplugCamera, event: DeviceAdded) -> None:
        await asyncio.to_thread(camera.plugged)
        if self.controller is not None:
            self.controller.post(event)

    async def _apply_route(self) -> None:
        """Send call audio and prompts where they belong now: a headset, else the booth's own."""
        if self.router is None:
            return
        card = self._headset_card
        # -1: a headset udev gave no card number; its route is the default devices.
        route = await asyncio.to_thread(
            self.router.route, card if card is None or card >= 0 else None
        )
        if card is not None:
            route = replace(route, headset=True, max_volume=self.router.headset_max_volume)
        self.route = route
        speaker, microphone = self.speaker, self.media.microphone if self.media else None
        if isinstance(speaker, PipeSpeaker | SimulatedSpeaker):
            speaker.set_output(route.speaker)
            speaker.set_max_volume(route.max_volume)
        if microphone is not None and hasattr(microphone, "set_input"):
            microphone.set_input(route.microphone)
        if self.prompts is not None:
            self.prompts.output = route.speaker
        logs.log_event(
            "audio_routed", headset=route.headset, echo_cancelled=route.speaker == EC_SINK
        )

    async def _watch_devices(self) -> None:
        """Look at what the open camera and microphone deliver; report one that gives nothing."""
        loop = asyncio.get_running_loop()
        while not self._stopped.is_set():
            await asyncio.sleep(WATCH_INTERVAL)
            media, controller, watch = self.media, self.controller, self.watch
            if media is None or controller is None or watch is None:
                continue
            booth = controller.booth
            for event in watch.check(
                loop.time(),
                camera_open=media.camera_on and DeviceKind.CAMERA not in booth.missing,
                microphone_open=media.microphone_on,
            ):
                controller.post(event)

    def _connect_hub(self, controller: Controller, devices: LocalMedia, credential: str) -> None:
        """The hub link and the call engine: the staff-alert and call ports of the controller."""
        health = LinkHealth(controller.post)
        state = os.environ.get("STATE_DIRECTORY")  # systemd's StateDirectory=, if any
        link = HubLink(
            self.config.hub,
            self.config.booth.id,
            credential,
            site=self.config.site,
            on_event=health.from_hub,
            outbox_file=OutboxFile(Path(state.split(":")[0]) / OUTBOX_NAME) if state else None,
        )
        engine = ThreadedCallEngine(
            link,
            self.config.ice_servers,
            camera=devices.camera,
            microphone=devices.microphone,
            speaker=self.speaker,
            post=health.from_media,
        )
        controller.call = engine
        controller.alerts = link
        controller.state_listeners.append(self._tell_presence)
        self.health, self.link, self.call = health, link, engine
        link.start()

    def _tell_presence(self, before: Booth, after: Booth) -> None:
        if self.link is None or summary(before) == summary(after):
            return
        task = asyncio.get_running_loop().create_task(self.link.set_presence(*summary(after)))
        self._presence_tasks.add(task)
        task.add_done_callback(self._presence_tasks.discard)

    @property
    def simulated(self) -> bool:
        return self.backend is Backend.SIM

    def _seed_devices(self, controller: Controller) -> None:
        """Note a headset plugged in before start; built-in devices are assumed present.

        udev never reports a Pi (CSI) camera or an onboard speaker as such, so
        absence at start proves nothing; only a removal event marks a device gone.
        """
        for event in udev.present_events():
            if event.kind is DeviceKind.HEADSET:
                controller.booth = replace(controller.booth, headset=True)
                self._headset_card = event.card if event.card is not None else -1

    def _on_state(self, before: Booth, after: Booth) -> None:
        if after.state is not before.state:
            self.notifier.status(after.state.value)

    def request_stop(self, reason: str = "signal") -> None:
        """SIGTERM lands here: tell systemd, then wind down on the loop."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        logs.log_event("booth_stopping", reason=reason)
        self.notifier.stopping()
        if self.controller is not None:
            self.controller.stop()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    @property
    def stopped_event(self) -> asyncio.Event:
        """Set once the booth has been asked to stop (SIGTERM, quit)."""
        return self._stopped

    async def close(self) -> None:
        """Release hardware in reverse order; bounded so systemd never has to kill us."""
        self.request_stop("closing")
        if self.watchdog is not None:
            self.watchdog.stop()
        if self._run_task is not None:
            try:
                await asyncio.wait_for(self._run_task, STOP_DEADLINE)
            except (TimeoutError, asyncio.CancelledError):
                _log.warning("controller did not stop in time")
        if self.call is not None:
            await self.call.close()
        if self.link is not None:
            await self.link.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        if self.speaker is not None:
            self.speaker.close()
        if self.prompts is not None:
            await self.prompts.stop()
        if self.media is not None:
            await self.media.close()
        if self.watcher is not None:
            self.watcher.stop()
        if self.simulation is not None:
            self.simulation.monitor.close()
        if self.gpio is not None:
            self.gpio.close()


class _LateOutputs:
    """Lights and alarm, bound late: the controller exists before the GPIO it drives."""

    def __init__(self, runtime: BoothRuntime) -> None:
        self._runtime = runtime

    def set_occupancy_light(self, on: bool) -> None:
        if self._runtime.gpio is not None:
            self._runtime.gpio.set_occupancy_light(on)

    def set_alarm(self, on: bool) -> None:
        if self._runtime.gpio is not None:
            self._runtime.gpio.set_alarm(on)


def _usb_camera() -> Camera | None:
    """The USB camera plugged in now, if any (a fresh handle for hot-plug)."""
    from hardware.v4l2 import UsbCamera

    node = usb_camera_node(list_video_devices())
    return UsbCamera(node) if node is not None else None


def _blocked_since(path: Path) -> str | None:
    """When updates became impossible, if the updater says it is time to alert; else None."""
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(64 * 1024))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("alert") is not True:
        return None
    since = data.get("impossible_since")
    return since[:64] if isinstance(since, str) and since else "unknown"


def _read_small(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")[:64]
    except (OSError, UnicodeDecodeError):
        return None


def _write_small(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
