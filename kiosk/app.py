"""Assembles a running booth: hardware backends, the controller, systemd.

``--simulate`` (or ``KIOSK_HARDWARE=sim``, or ``backend = "sim"`` in the
config) picks the simulated twins: gpiozero's own ``MockFactory`` under the
real GPIO code, and a pipe-backed udev monitor. Nothing else changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from hardware import udev
from hardware.audio import PipeSpeaker, SimulatedMicrophone, SimulatedSpeaker, Speaker
from hardware.camera import Camera, TestCard, make_camera
from hardware.events import DeviceKind, HardwareFault
from hardware.gpio import BoothGpio, SimulatedWiring, make_mock_factory
from hardware.systemd import Notifier, Watchdog, watchdog_interval
from kiosk import __version__, logs
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
from kiosk.session import Booth, initial

_log = logging.getLogger(__name__)
STOP_DEADLINE = 4.0


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
        devices = (
            LocalMedia(TestCard(), SimulatedMicrophone())
            if self.simulated
            else LocalMedia(await self._camera(), None)
        )
        self.speaker = SimulatedSpeaker() if self.simulated else PipeSpeaker()
        controller = Controller(self.config, _LateOutputs(self), booth=booth, devices=devices)
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
            assert factory is not None
            monitor = udev.FakeMonitor()
            self.simulation = Simulation(SimulatedWiring(factory, self.config.hardware), monitor)
            self.watcher = udev.HotplugWatcher(monitor, controller.post, loop)
        else:
            self._seed_devices(controller)
            try:
                self.watcher = udev.HotplugWatcher.for_system(controller.post, loop)
            except HardwareError as exc:
                _log.warning("%s", exc)
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
        return controller

    async def _camera(self) -> Camera | None:
        """The configured camera (``[hardware] camera``); asking libcamera takes a while."""
        camera = await asyncio.to_thread(make_camera, self.config.hardware.camera.value)
        if camera is None:
            logs.log_event("camera_missing", choice=self.config.hardware.camera.value)
        return camera

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
        if DeviceKind.HEADSET in udev.present_devices():
            controller.booth = replace(controller.booth, headset=True)

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
        if self.speaker is not None:
            self.speaker.close()
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
