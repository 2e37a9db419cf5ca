"""The simulator's hands, beside the booth's screen on a laptop.

It stands outside the booth's screen area and stands for what a resident
does to the booth's hardware: the door, the emergency button (held as long
as the mouse is held), the network and the camera, and the clinician at the
hub. It drives the same mock pins and events the headless simulator does.
When the booth is connected to a real hub, the clinician is a real person at
the console and the panel leaves answering to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.lang import Builder
from kivy.uix.boxlayout import BoxLayout

from hardware.events import DeviceKind
from kiosk.session import (
    CallEnded,
    ClinicianAnswered,
    EmergencyCleared,
    NetworkLost,
    NetworkRestored,
)

Builder.load_file(str(Path(__file__).with_suffix(".kv")))

PANEL_WIDTH = 260


class SimPanel(BoxLayout):  # type: ignore[misc]
    """Buttons for the simulated world around the booth."""

    def __init__(self, runtime: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime
        if getattr(runtime, "call", None) is not None:
            # A real hub is connected: the clinician answers and ends from the console.
            from kivy.uix.label import Label

            for name in ("answer", "end"):
                self.remove_widget(self.ids[name])
            note = Label(
                text="The clinician answers\nfrom the console,\nin a browser.",
                halign="center",
                size_hint_y=None,
                height=90,
            )
            self.add_widget(note)

    @property
    def _sim(self) -> Any:
        return self.runtime.simulation

    def door(self, is_open: bool) -> None:
        wiring = self._sim.wiring
        wiring.open_door() if is_open else wiring.close_door()

    def emergency(self, pressed: bool) -> None:
        wiring = self._sim.wiring
        wiring.press_emergency() if pressed else wiring.release_emergency()

    def network(self, down: bool) -> None:
        self.runtime.controller.post(NetworkLost() if down else NetworkRestored())

    def camera(self, unplugged: bool) -> None:
        self._sim.monitor.trigger_kind("remove" if unplugged else "add", DeviceKind.CAMERA)

    def clinician(self, what: str) -> None:
        event = {"answer": ClinicianAnswered(), "end": CallEnded(), "clear": EmergencyCleared()}[
            what
        ]
        self.runtime.controller.post(event)
