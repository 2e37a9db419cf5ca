"""Runs the visit state machine on the booth's one asyncio loop.

Events arrive on one queue from hardware (already on the loop), the screen,
the call engine and timers. Each is stepped through :func:`kiosk.session.step`
and the effects are carried out in order through small ports, safety first:
the alarm and lights are switched synchronously before anything that may
wait on the network.

A port that fails is logged by effect name and the booth carries on: a dead
call engine must never take the emergency path down with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hardware.events import DeviceAdded, DeviceRemoved, HardwareFault, HardwareRestored
from kiosk import logs
from kiosk.config import BoothConfig
from kiosk.session import (
    Booth,
    BundleNews,
    BundleState,
    Do,
    Effect,
    Event,
    Intent,
    State,
    Timeout,
    Timer,
    Touch,
    WipeDone,
    initial,
    step,
)

_log = logging.getLogger(__name__)


class Outputs(Protocol):
    """Lights and alarm: :class:`hardware.gpio.BoothGpio` is one."""

    def set_occupancy_light(self, on: bool) -> None: ...

    def set_alarm(self, on: bool) -> None: ...


class CallPort(Protocol):
    """The call engine: queue place, the call, and what the clinician is told."""

    async def join_queue(self, visit: Visit) -> None: ...

    async def leave_queue(self) -> None: ...

    async def accept_call(self) -> None: ...

    async def end_call(self) -> None: ...

    async def rebuild_call(self) -> None: ...

    async def pause_media(self) -> None: ...

    async def resume_media(self) -> None: ...

    async def set_microphone(self, on: bool) -> None: ...

    async def set_camera(self, on: bool) -> None: ...

    async def tell_clinician(self, what: str) -> None: ...


class StaffAlerts(Protocol):
    """Tells site staff of an emergency; must queue and retry when offline."""

    def alert(self, kind: str) -> None: ...


class MediaDevices(Protocol):
    """Camera and microphone for the device check and the call."""

    async def open(self, audio_only: bool) -> None: ...

    async def close(self) -> None: ...


class Bundles(Protocol):
    """Hands a staged technician bundle to the privileged service that applies it."""

    async def request_apply(self) -> bool:
        """True once the request is made; the booth is restarted when the bundle is applied."""
        ...


class NoBundles:
    """A booth with nowhere to send the request (not installed): applying fails, and says so."""

    async def request_apply(self) -> bool:
        return False


@dataclass
class Visit:
    """Everything of one resident's visit. Dropped whole when the visit is wiped."""

    language: str
    started: float
    appointment_code: str | None = field(default=None, repr=False)
    audio_only: bool = False


class NoCall:
    """The call port before a call engine is attached: every request is a no-op."""

    async def join_queue(self, visit: Visit) -> None:
        return None

    async def leave_queue(self) -> None:
        return None

    async def accept_call(self) -> None:
        return None

    async def end_call(self) -> None:
        return None

    async def rebuild_call(self) -> None:
        return None

    async def pause_media(self) -> None:
        return None

    async def resume_media(self) -> None:
        return None

    async def set_microphone(self, on: bool) -> None:
        return None

    async def set_camera(self, on: bool) -> None:
        return None

    async def tell_clinician(self, what: str) -> None:
        return None


class NoDevices:
    """Media devices before a media backend is attached."""

    async def open(self, audio_only: bool) -> None:
        return None

    async def close(self) -> None:
        return None


class LocalStaffAlerts:
    """Keeps alerts until a hub connection takes them; never drops one."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    def alert(self, kind: str) -> None:
        self.pending.append(kind)


@dataclass(frozen=True)
class _TimerFired:
    timer: Timer
    generation: int


@dataclass(frozen=True)
class _Stop:
    pass


StateListener = Callable[[Booth, Booth], None]
EffectListener = Callable[[Effect], None]
StepListener = Callable[[Booth, Booth, list[Effect]], None]


class Controller:
    """Feeds events to the state machine and carries out its effects."""

    def __init__(
        self,
        config: BoothConfig,
        outputs: Outputs,
        *,
        call: CallPort | None = None,
        devices: MediaDevices | None = None,
        alerts: StaffAlerts | None = None,
        bundles: Bundles | None = None,
        booth: Booth | None = None,
    ) -> None:
        self.config = config
        self.outputs = outputs
        self.call: CallPort = call or NoCall()
        self.devices: MediaDevices = devices or NoDevices()
        self.alerts: StaffAlerts = alerts or LocalStaffAlerts()
        self.bundles: Bundles = bundles or NoBundles()
        self.booth = booth or initial(config.site.default_language)
        self.visit: Visit | None = None
        self.state_listeners: list[StateListener] = []
        self.effect_listeners: list[EffectListener] = []
        self.step_listeners: list[StepListener] = []
        self._queue: asyncio.Queue[Event | _TimerFired | _Stop] = asyncio.Queue()
        self._timers: dict[Timer, tuple[asyncio.TimerHandle, int]] = {}
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_event_at = time.monotonic()
        self.busy_since: float | None = None

    # ------------------------------------------------------------ input

    def post(self, event: Event) -> None:
        """Queue an event; call on the loop thread."""
        self._queue.put_nowait(event)

    def post_threadsafe(self, event: Event) -> None:
        """Queue an event from another thread (gpiozero, pyudev observers)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("controller is not running")
        loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def stop(self) -> None:
        self._queue.put_nowait(_Stop())

    @property
    def healthy(self) -> bool:
        """False when an event has been waiting on a stuck handler for over 5 s."""
        return self.busy_since is None or time.monotonic() - self.busy_since < 5.0

    # ------------------------------------------------------------ loop

    async def run(self) -> None:
        """Process events until :meth:`stop`; then cancel timers and finish pending work."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _Stop):
                    break
                self.busy_since = time.monotonic()
                try:
                    self.handle(item)
                finally:
                    self.busy_since = None
                    self.last_event_at = time.monotonic()
        finally:
            for handle, _ in self._timers.values():
                handle.cancel()
            self._timers.clear()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=3.0)

    async def settle(self) -> None:
        """Wait until every queued event and started task is done (tests, simulator)."""
        while not self._queue.empty() or self._tasks:
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            await asyncio.sleep(0)

    def handle(self, item: Event | _TimerFired) -> None:
        """Step one event through the machine and carry out what it says."""
        if isinstance(item, _TimerFired):
            armed = self._timers.get(item.timer)
            if armed is None or armed[1] != item.generation:
                return  # cancelled or restarted after it fired: stale
            del self._timers[item.timer]
            logs.log_event("timer_fired", timer=item.timer.value)
            event: Event = Timeout(item.timer)
        else:
            event = item
        if (
            isinstance(event, Touch)
            and event.intent is Intent.LANGUAGE
            and event.value not in self.config.site.languages
        ):
            logs.log_event("command_rejected", reason="bad_argument")
            return  # only the site's languages can be chosen
        _log_hardware(event)
        before = self.booth
        after, effects = step(before, event)
        self.booth = after
        if (
            isinstance(event, Touch)
            and event.intent is Intent.APPOINTMENT
            and self.visit is not None
            and before.state is State.CHECK_IN
            and after.state is not State.CHECK_IN
        ):
            self.visit.appointment_code = event.value
        if after.state is not before.state:
            logs.log_event("state_changed", state=after.state.value, previous=before.state.value)
        for effect in effects:
            self._carry_out(effect)
        if after != before:
            for listener in list(self.state_listeners):
                try:
                    listener(before, after)
                except Exception:
                    _log.exception("state listener failed")
        if after != before or effects:
            for step_listener in list(self.step_listeners):
                try:
                    step_listener(before, after, effects)
                except Exception:
                    _log.exception("step listener failed")

    # ------------------------------------------------------------ effects

    def _carry_out(self, effect: Effect) -> None:
        logs.log_event("effect", effect=effect.do.value, detail=effect.detail or None)
        try:
            self._do(effect)
        except Exception:
            _log.error("effect %s failed", effect.do.value, exc_info=True)
        for listener in list(self.effect_listeners):
            try:
                listener(effect)
            except Exception:
                _log.exception("effect listener failed")

    def _do(self, effect: Effect) -> None:
        do = effect.do
        booth = self.booth
        if do is Do.ALARM_ON:
            self.outputs.set_alarm(True)
            logs.log_event("emergency_raised")
        elif do is Do.ALARM_OFF:
            self.outputs.set_alarm(False)
            logs.log_event("emergency_cleared")
        elif do is Do.ALERT_STAFF:
            self.alerts.alert("emergency")
        elif do is Do.OCCUPANCY_LIGHT_ON:
            self.outputs.set_occupancy_light(True)
        elif do is Do.OCCUPANCY_LIGHT_OFF:
            self.outputs.set_occupancy_light(False)
        elif do is Do.START_TIMER:
            self._start_timer(Timer(effect.detail))
        elif do is Do.CANCEL_TIMER:
            self._cancel_timer(Timer(effect.detail))
        elif do is Do.BEGIN_VISIT:
            loop = self._loop or asyncio.get_running_loop()
            self.visit = Visit(language=booth.language, started=loop.time())
        elif do is Do.WIPE:
            self._spawn(self._wipe())
        elif do is Do.JOIN_QUEUE:
            visit = self.visit or Visit(language=booth.language, started=0.0)
            visit.language = booth.language
            visit.audio_only = booth.audio_only
            self._spawn(self.call.join_queue(visit))
        elif do is Do.LEAVE_QUEUE:
            self._spawn(self.call.leave_queue())
        elif do is Do.ACCEPT_CALL:
            self._spawn(self.call.accept_call())
        elif do is Do.END_CALL:
            self._spawn(self.call.end_call())
        elif do is Do.REBUILD_CALL:
            self._spawn(self.call.rebuild_call())
        elif do is Do.PAUSE_MEDIA:
            self._spawn(self.call.pause_media())
        elif do is Do.RESUME_MEDIA:
            self._spawn(self.call.resume_media())
        elif do is Do.MICROPHONE_ON or do is Do.MICROPHONE_OFF:
            self._spawn(self.call.set_microphone(do is Do.MICROPHONE_ON))
        elif do is Do.CAMERA_ON or do is Do.CAMERA_OFF:
            self._spawn(self.call.set_camera(do is Do.CAMERA_ON))
        elif do is Do.TELL_CLINICIAN:
            self._spawn(self.call.tell_clinician(effect.detail))
        elif do is Do.OPEN_DEVICES:
            self._spawn(self.devices.open(booth.audio_only))
        elif do is Do.CLOSE_DEVICES:
            self._spawn(self.devices.close())
        elif do is Do.APPLY_BUNDLE:
            self._spawn(self._apply_bundle())

    async def _apply_bundle(self) -> None:
        if not await self.bundles.request_apply():
            self.post(BundleNews(BundleState.FAILED))

    async def _wipe(self) -> None:
        """Drop the visit: devices closed, visit object gone, then tell the machine."""
        try:
            await self.devices.close()
        finally:
            self.visit = None
            self.post(WipeDone())

    def _spawn(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        task: asyncio.Task[None] = asyncio.ensure_future(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.error("port call failed", exc_info=True)

    # ------------------------------------------------------------ timers

    def duration(self, timer: Timer) -> float:
        t = self.config.timeouts
        return {
            Timer.IDLE_WARNING: t.idle_warning_seconds,
            Timer.IDLE_RESET: t.idle_reset_seconds,
            Timer.WAIT_LIMIT: t.longest_wait_seconds,
            Timer.WRAP_UP: t.wrap_up_seconds,
            Timer.NETWORK_GRACE: t.network_grace_seconds,
            Timer.EMERGENCY_AUTO_CLEAR: self.config.emergency.auto_clear_minutes * 60.0,
        }[timer]

    def _start_timer(self, timer: Timer) -> None:
        self._cancel_timer(timer)
        seconds = self.duration(timer)
        if seconds <= 0:
            return  # configured off (e.g. emergencies only staff may clear)
        self._generation += 1
        fired = _TimerFired(timer, self._generation)
        loop = self._loop or asyncio.get_running_loop()
        handle = loop.call_later(seconds, self._queue.put_nowait, fired)
        self._timers[timer] = (handle, self._generation)

    def _cancel_timer(self, timer: Timer) -> None:
        armed = self._timers.pop(timer, None)
        if armed is not None:
            armed[0].cancel()

    def time_left(self, timer: Timer) -> float | None:
        """Seconds until ``timer`` runs out, or None when it is not running."""
        armed = self._timers.get(timer)
        if armed is None or self._loop is None:
            return None
        return max(0.0, armed[0].when() - self._loop.time())

    @property
    def armed_timers(self) -> frozenset[Timer]:
        return frozenset(self._timers)


def _log_hardware(event: Event) -> None:
    """Hardware news goes to the log by device and fixed reason word; nothing else is in them."""
    match event:
        case HardwareFault(device=device, reason=reason):
            logs.log_event("hardware_fault", device=device, reason=reason)
        case HardwareRestored(device=device):
            logs.log_event("hardware_restored", device=device)
        case DeviceAdded(kind=kind):
            logs.log_event("device_added", kind=kind.value)
        case DeviceRemoved(kind=kind):
            logs.log_event("device_removed", kind=kind.value)
