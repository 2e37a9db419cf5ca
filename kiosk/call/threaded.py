"""The call's media on its own thread and event loop, so drawing the screen never starves it.

The booth's one loop also runs Kivy, and Kivy's buffer swap blocks that loop
for as long as the GPU (or Mesa's llvmpipe on a laptop) takes to draw a
frame: measured here, three quarters of the loop's time during a call
(``tests/perf/bench_call.py``). aiortc on the same loop then sends 5-9
pictures a second instead of 20, answers ICE and RTCP late, and a call takes
3 s rather than 0.2 s to show the clinician. The swap releases the GIL, so
a second thread with its own loop keeps the media at full rate while the
screen draws.

:class:`ThreadedCallEngine` is the controller's :class:`~kiosk.controller.CallPort`
on the booth's loop; the :class:`~kiosk.call.engine.CallEngine` inside it
runs on the call thread's loop. Every crossing is explicit and one way:

* the booth's loop asks the engine (``accept_call``, ``pause_media``, hub
  messages) with :func:`asyncio.run_coroutine_threadsafe` and waits;
* the engine's sends to the hub and its queue requests go back to the
  :class:`~kiosk.call.hub_link.HubLink` on the booth's loop the same way;
* its session events and listener calls are posted with
  ``call_soon_threadsafe``, so the visit still only ever changes on its own
  loop.

The clinician's newest picture is read from the booth's loop without a lock:
it is one reference to an immutable decoded frame, swapped whole.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

from clinic.protocol import Message
from hardware.audio import Microphone, Speaker
from hardware.camera import Camera, Frame
from kiosk import config, session
from kiosk.call.engine import CallEngine, CallHandler, CallStatus, ClinicianState
from kiosk.controller import Visit

T = TypeVar("T")

STOP_TIMEOUT: Final = 5.0
"""Seconds the call thread has to wind down when the booth stops."""


class CallThread:
    """A daemon thread running an event loop of its own until :meth:`stop`."""

    def __init__(self, name: str = "call-media") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the call thread's loop and wait for it from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, STOP_TIMEOUT)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class _LinkFromCallThread:
    """The engine's hub port, on the call thread: each request crosses to the booth's loop."""

    def __init__(self, link: Any, booth_loop: asyncio.AbstractEventLoop) -> None:
        self._link = link
        self._booth_loop = booth_loop
        self._in_call = False
        self.on_call: CallHandler | None = None

    async def _on_booth_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._booth_loop))

    @property
    def connected(self) -> bool:
        return bool(self._link.connected)  # one attribute read: safe from any thread

    @property
    def in_call(self) -> bool:
        return self._in_call

    @in_call.setter
    def in_call(self, value: bool) -> None:
        self._in_call = value
        self._booth_loop.call_soon_threadsafe(setattr, self._link, "in_call", value)

    async def send(self, message: Message) -> bool:
        sent: bool = await self._on_booth_loop(self._link.send(message))
        return sent

    async def join_queue(self, visit: Visit) -> None:
        await self._on_booth_loop(self._link.join_queue(visit))

    async def leave_queue(self) -> None:
        await self._on_booth_loop(self._link.leave_queue())


class ThreadedCallEngine:
    """The controller's call port; the call itself runs on :class:`CallThread`.

    Build it on the booth's loop. ``link`` is the hub link (its ``on_call`` is
    taken over); the rest is :class:`CallEngine`'s. ``post``, the listeners
    and :attr:`clinician_state` are all used on the booth's loop only.
    """

    def __init__(
        self,
        link: Any,
        configured_ice: Sequence[config.IceServer],
        *,
        camera: Camera | None,
        microphone: Microphone | None,
        speaker: Speaker | None,
        post: Callable[[session.Event], None],
        **options: Any,
    ) -> None:
        self._booth_loop = asyncio.get_running_loop()
        self._post = post
        self.thread = CallThread()
        self.engine = CallEngine(
            _LinkFromCallThread(link, self._booth_loop),
            configured_ice,
            camera=camera,
            microphone=microphone,
            speaker=speaker,
            post=self._from_call_thread,
            **options,
        )
        link.on_call = self.on_hub_message
        self.clinician_state = ClinicianState()
        """The console's mute and camera, as it last told the booth (on the booth's loop)."""
        self.clinician_listeners: list[Callable[[ClinicianState], None]] = []
        self.status_listeners: list[Callable[[CallStatus], None]] = []
        self.engine.clinician_listeners.append(self._clinician_from_call_thread)
        self.engine.status_listeners.append(self._status_from_call_thread)

    # ------------------------------------------------ from the call thread

    def _from_call_thread(self, event: session.Event) -> None:
        self._booth_loop.call_soon_threadsafe(self._post, event)

    def _clinician_from_call_thread(self, state: ClinicianState) -> None:
        self._booth_loop.call_soon_threadsafe(self._clinician_changed, state)

    def _clinician_changed(self, state: ClinicianState) -> None:
        self.clinician_state = state
        for listener in list(self.clinician_listeners):
            listener(state)

    def _status_from_call_thread(self, status: CallStatus) -> None:
        self._booth_loop.call_soon_threadsafe(self._status_changed, status)

    def _status_changed(self, status: CallStatus) -> None:
        for listener in list(self.status_listeners):
            listener(status)

    # ----------------------------------------------------------- reading

    @property
    def status(self) -> CallStatus:
        return self.engine.status

    @property
    def call_id(self) -> str | None:
        return self.engine.call_id

    def remote_frame(self) -> Frame | None:
        """The clinician's newest picture, for the screen on the booth's loop."""
        return self.engine.remote_frame()

    # ------------------------------------------------------- the call port

    async def on_hub_message(self, message: Message) -> None:
        await self.thread.run(self.engine.on_hub_message(message))

    async def join_queue(self, visit: Visit) -> None:
        await self.thread.run(self.engine.join_queue(visit))

    async def leave_queue(self) -> None:
        await self.thread.run(self.engine.leave_queue())

    async def accept_call(self) -> None:
        await self.thread.run(self.engine.accept_call())

    async def end_call(self) -> None:
        await self.thread.run(self.engine.end_call())

    async def rebuild_call(self) -> None:
        await self.thread.run(self.engine.rebuild_call())

    async def pause_media(self) -> None:
        await self.thread.run(self.engine.pause_media())

    async def resume_media(self) -> None:
        await self.thread.run(self.engine.resume_media())

    async def set_microphone(self, on: bool) -> None:
        await self.thread.run(self.engine.set_microphone(on))

    async def set_camera(self, on: bool) -> None:
        await self.thread.run(self.engine.set_camera(on))

    async def tell_clinician(self, what: str) -> None:
        await self.thread.run(self.engine.tell_clinician(what))

    async def close(self) -> None:
        """Drop the call without telling the hub, then stop the call thread."""
        if self.thread.alive:
            await self.thread.run(self.engine.close())
        await self.thread.stop()
