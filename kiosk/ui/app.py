"""The booth's Kivy app, on the same asyncio loop as the controller.

The app draws :func:`kiosk.presenter.present`'s view of the controller's
booth and sends the resident's intents back as :class:`Touch` events. Local
touches (the keypad opening, larger text) change only :class:`UiState`.
Nothing here decides anything about the visit.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from kivy.app import App
from kivy.base import EventLoop
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.input.provider import MotionEventProvider
from kivy.properties import ObjectProperty

from hardware.camera import Frame
from hardware.speech import Speaker
from kiosk import texts
from kiosk.controller import Controller
from kiosk.i18n import Translator
from kiosk.presenter import (
    Action,
    Context,
    Local,
    UiState,
    View,
    follow,
    fresh_ui,
    pin_note,
    present,
    reduce,
)
from kiosk.session import Booth, Intent, State, TechnicianUnlocked, Timer, Touch
from kiosk.technician import Outcome, PinGate
from kiosk.ui import lockdown
from kiosk.ui.look import Look
from kiosk.ui.root import BoothRoot
from kiosk.ui.video import Picture

_log = logging.getLogger(__name__)

PREVIEW_INTERVAL = 0.1
"""Self-view and microphone bar before a call: ten pictures a second are enough to check."""
CALL_FPS = 15
"""The clinician's face in a call: looked for this often, and Kivy ticks at least this fast then.

The screen is redrawn only when a new picture came (:mod:`kiosk.ui.video`).
Without a GPU each redraw of the 1024x600 call screen costs about 12 ms of
CPU (``tests/perf/bench_call.py``), so every picture a second costs about
0.7 CPU seconds a call-minute: asked for 25, Mesa's llvmpipe managed 8 to 14
and took most of a core. 15 is a usual rate for a face in a video visit.
"""
SELF_VIEW_EVERY = 3
"""In a call the resident's own picture is taken with every third of the clinician's (5 a
second): it is small and only says the camera works, and taken alone it is one more redraw."""


class RemoteVideo(Protocol):
    """The call engine's side the screen needs: the clinician's newest picture."""

    def remote_frame(self) -> Frame | None: ...


class BoothApp(App):  # type: ignore[misc]
    """One window; the controller's booth drawn through the presenter."""

    use_kivy_settings = False
    title = "Telehealth booth"
    look: Any = ObjectProperty(None)

    def __init__(
        self,
        controller: Controller,
        *,
        speaker: Speaker | None = None,
        runtime: Any = None,
        remote: RemoteVideo | None = None,
        on_volume: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.controller = controller
        self.runtime = runtime  # given only on a laptop: adds the simulator's panel
        self.config_ = controller.config
        self.speaker = speaker
        self.remote = remote
        self.on_volume = on_volume  # the call's speaker follows the volume buttons
        self._told_volume: int | None = None
        self.ui: UiState = fresh_ui(self.config_)
        self.look = Look(self.config_.display, self.ui.large_text, self.ui.high_contrast)
        t = self.config_.technician
        self.gate = PinGate(t.pin_hash, t.max_attempts, t.lockout_seconds)
        self.root_widget: BoothRoot | None = None
        self.view: View | None = None
        self.renders = 0
        self._spoken_key: tuple[object, ...] = ()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick: Any = None
        self._read_first = _ReadInputFirst(Window)
        self._preview: Any = None
        self._preview_interval = 0.0
        self._ticks = 0
        self._clinician_due = 0.0
        self._self_view = Picture()
        self._clinician = Picture()
        self._idle_fps: float | None = None

    # ------------------------------------------------------------ Kivy hooks

    def build(self) -> Any:
        self.root_widget = BoothRoot(self.on_action, clock=Clock.get_time, look=self.look)
        self.controller.state_listeners.append(self._on_state)
        listeners = getattr(self.remote, "clinician_listeners", None)
        if listeners is not None:  # the clinician muted or turned their camera off: say so
            listeners.append(lambda _state: self.render())
        if self.runtime is None or self.runtime.simulation is None:
            return self.root_widget
        from kivy.uix.boxlayout import BoxLayout

        from kiosk.ui.simpanel import SimPanel

        beside = BoxLayout(orientation="horizontal")
        self.root_widget.size_hint_x = None
        self.root_widget.width = self.config_.display.width
        beside.add_widget(self.root_widget)
        beside.add_widget(SimPanel(self.runtime))
        return beside

    def on_start(self) -> None:
        lockdown.install(Window)
        self.render()
        self._tick = Clock.schedule_interval(self._every_second, 1.0)
        EventLoop.input_providers.insert(0, self._read_first)

    def on_stop(self) -> None:
        if self._on_state in self.controller.state_listeners:
            self.controller.state_listeners.remove(self._on_state)
        if self._tick is not None:
            self._tick.cancel()
        EventLoop.remove_input_provider(self._read_first)
        if self._preview is not None:
            self._preview.cancel()
        self._set_call_fps(False)

    def open_settings(self, *largs: Any) -> bool:
        return False  # Kivy's settings panel is never reachable on a booth

    @property
    def _texture(self) -> Any:
        """The resident's picture on the screen now, if any."""
        return self._self_view.texture

    @property
    def _remote_texture(self) -> Any:
        """The clinician's picture on the screen now, if any."""
        return self._clinician.texture

    @property
    def remote_pictures(self) -> int:
        """Clinician pictures put on the screen so far (the call benchmark's frame rate)."""
        return self._clinician.shown

    # ------------------------------------------------------------ input

    def on_action(self, action: Action) -> None:
        """A resident touched ``action``: change the view, or tell the controller."""
        if action.intent is not None:
            self.ui = reduce(self.ui, action)
            self.controller.post(Touch(action.intent, action.value))
            self.render()
            return
        if action.local is Local.TECHNICIAN and self.controller.booth.state not in (
            State.ATTRACT,
            State.OUT_OF_SERVICE,
            State.EMERGENCY,
        ):
            return  # never over a resident's visit
        if action.local is Local.SUBMIT_PIN:
            self._spawn(self._check_pin(self.ui.entry))
            return
        if action.local is Local.PLAY_SOUND and self.speaker is not None:
            t = self._translator()
            sound = t(texts.DEVICE_CHECK.test_sound)
            self._spawn(self.speaker.say(sound, self.controller.booth.language))
        self.ui = reduce(self.ui, action)
        if self.controller.booth.state in _IDLE_WATCHED:
            self.controller.post(Touch(Intent.ACTIVITY))
        self.render()

    async def _check_pin(self, pin: str) -> None:
        now = asyncio.get_running_loop().time()
        result = await asyncio.to_thread(self.gate.try_pin, pin, now)
        if result.ok:
            self.ui = reduce(self.ui, Action("", local=Local.CLOSE_PIN))
            self.controller.post(TechnicianUnlocked())
        else:
            t = self._translator()
            minutes = math.ceil(result.seconds_left / 60)
            outcome = "locked" if result.outcome is Outcome.LOCKED else "wrong"
            self.ui = replace(self.ui, entry="", pin_note=pin_note(t, outcome, minutes))
        self.render()

    # ------------------------------------------------------------ output

    def _on_state(self, before: Booth, after: Booth) -> None:
        self.ui = follow(self.ui, before, after, self.config_)
        if after.call_live and not before.call_live and self.speaker is not None:
            self._spawn(self.speaker.stop())  # a prompt must not go into the call's microphone
        self.render()

    def _context(self) -> Context:
        visit = self.controller.visit
        waited = 0
        if visit is not None and self.controller.booth.state is State.WAITING:
            loop = asyncio.get_event_loop()
            waited = int(max(0.0, loop.time() - visit.started) // 60)
        clinician = getattr(self.remote, "clinician_state", None)
        bundles = getattr(self.runtime, "bundles", None)
        staged = getattr(bundles, "status", None)
        return Context(
            self.config_,
            waited_minutes=waited,
            clinician_muted=bool(getattr(clinician, "muted", False)),
            clinician_camera_off=bool(getattr(clinician, "camera_off", False)),
            bundle_summary=str(getattr(staged, "summary", "")),
            bundle_reason=str(getattr(staged, "reason", "")),
        )

    def _translator(self) -> Translator:
        e = self.config_.emergency
        lang = self.controller.booth.language
        return Translator(
            lang,
            staff=e.staff.get(lang, ""),
            emergency_number=e.emergency_number,
            crisis_number=e.crisis_number,
        )

    def render(self) -> None:
        """Draw the booth as it is now."""
        if self.root_widget is None:
            return
        booth = self.controller.booth
        if self.on_volume is not None and self.ui.volume != self._told_volume:
            self._told_volume = self.ui.volume  # a new visit starts at the usual volume again
            self.on_volume(self.ui.volume)
        view = present(booth, self.ui, self._context())
        look = Look(self.config_.display, view.large_text, view.high_contrast)
        if look != self.look:
            self.look = look
            self._rebuild()
        self.view = view
        self.root_widget.show(view, look)
        self.renders += 1
        self._speak(view)
        self._follow_preview(view)

    def _follow_preview(self, view: View) -> None:
        """Pictures and the microphone bar, refreshed while a screen shows them.

        Before a call ten times a second is plenty and keeps the booth cool; a
        clinician's face needs :data:`CALL_FPS`, so Kivy ticks faster for as
        long as it is shown and goes back to the configured rate after.
        """
        wanted = view.self_view or view.level_meter or view.remote_video
        interval = 1 / CALL_FPS if view.remote_video else PREVIEW_INTERVAL
        if self._preview is not None and (not wanted or interval != self._preview_interval):
            self._preview.cancel()
            self._preview = None
        if wanted and self._preview is None:
            self._preview = Clock.schedule_interval(self._refresh_preview, interval)
            self._preview_interval = interval
        if not wanted:
            self._self_view.clear()  # drop the last picture of the resident too
        if not view.remote_video:
            self._clinician.clear()  # and of the clinician
        self._set_call_fps(view.remote_video)

    def _set_call_fps(self, calling: bool) -> None:
        # Kivy reads the frame cap on every tick; the config's value is the idle one.
        if calling and self._idle_fps is None:
            self._idle_fps = Clock._max_fps
            Clock._max_fps = max(float(CALL_FPS), self._idle_fps)
        elif not calling and self._idle_fps is not None:
            Clock._max_fps = self._idle_fps
            self._idle_fps = None

    def _refresh_preview(self, dt: float) -> None:
        if self.root_widget is None:
            return
        screen = self.root_widget.manager.current_screen
        calling = hasattr(screen, "remote")
        clinician_due = calling and self._clinician_is_due()
        if clinician_due:
            self._ticks += 1
        changed = False  # a level bar redraws itself; a texture's new pixels need asking
        remote = self.remote if clinician_due else None
        if remote is not None and self._clinician.update(remote.remote_frame()):
            screen.remote = self._clinician.texture
            changed = True
        preview = getattr(self.controller.devices, "preview", None)
        if preview is not None:
            if hasattr(screen, "level"):
                screen.level = self.controller.devices.level()  # type: ignore[attr-defined]
            # In a call, with the clinician's picture: one redraw for both.
            due = not calling or (clinician_due and self._ticks % SELF_VIEW_EVERY == 0)
            shows = hasattr(screen, "frame") and (due or screen.frame is None)
            if shows and self._self_view.update(preview()):
                screen.frame = self._self_view.texture
                changed = True
        if changed:
            screen.canvas.ask_update()

    def _clinician_is_due(self) -> bool:
        """At most :data:`CALL_FPS` clinician pictures a second, however often Kivy ticks.

        Kivy's interval events catch up after a late frame, which drew up to a
        third more pictures than asked for.
        """
        now = Clock.get_time()
        period = 1 / CALL_FPS
        if now < self._clinician_due:
            return False
        self._clinician_due = max(self._clinician_due, now - period / 2) + period
        return True

    def _rebuild(self) -> None:
        """Draw everything anew for a new look: kv rules read sizes and colours once."""
        old = self.root_widget
        self.root_widget = BoothRoot(self.on_action, clock=Clock.get_time, look=self.look)
        if old is None or old.parent is None:
            return
        parent = old.parent
        self.root_widget.size_hint_x = old.size_hint_x
        self.root_widget.width = old.width
        index = parent.children.index(old)
        parent.remove_widget(old)
        if index:
            parent.add_widget(self.root_widget, index=index)
        else:
            parent.add_widget(self.root_widget)  # the window's add_widget takes no index
        if getattr(self, "root", None) is old:
            setattr(self, "root", self.root_widget)  # noqa: B010 - Kivy's untyped attribute

    def _speak(self, view: View) -> None:
        if self.speaker is None or not view.read_aloud:
            return
        key = (view.state, view.layout, view.title, view.language, view.overlay is not None)
        if key == self._spoken_key:
            return
        self._spoken_key = key
        text = view.overlay.spoken if view.overlay is not None else view.spoken
        if text and not view.call_live:
            self._spawn(self.speaker.say(text, view.language))

    def _every_second(self, dt: float) -> None:
        booth = self.controller.booth
        if booth.idle_warning:
            left = self.controller.time_left(Timer.IDLE_RESET)
            seconds = math.ceil(left) if left is not None else 0
            if seconds != self.ui.idle_seconds_left:
                self.ui = replace(self.ui, idle_seconds_left=seconds)
                self.render()
        elif booth.state is State.WAITING:
            self.render()  # the minutes waited

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _ReadInputFirst(MotionEventProvider):  # type: ignore[misc]
    """Read the window's input queue again just before Kivy hands input to the widgets.

    Kivy reads SDL's queue after it draws a frame and hands what it read to
    the widgets at the next frame, so a touch waits one more frame than it
    needs to. Put first among the input providers, this reads the queue at the
    start of each frame's input step, and the mouse provider after it hands the
    touch over in the same frame: every touch is answered 1 / maxfps sooner, for
    one more (usually empty) read of the queue a frame. Measured by
    tests/perf/bench_ui.py.
    """

    def __init__(self, window: Any) -> None:
        super().__init__("read_input_first", None)
        self.window = window

    def update(self, dispatch_fn: Any) -> None:
        self.window.mainloop()


_IDLE_WATCHED = frozenset({State.NOTICE, State.DOOR_CHECK, State.CHECK_IN, State.DEVICE_CHECK})


async def run_app(app: BoothApp, stopped: asyncio.Event) -> None:
    """Run Kivy on this loop until the app stops or ``stopped`` is set."""
    task = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
    waiter = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            app.stop()
            await task
