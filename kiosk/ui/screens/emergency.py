"""911 and 988, in the resident's language, over everything; no button to dismiss it."""

from __future__ import annotations

from kivy.properties import ListProperty

from kiosk.presenter import View
from kiosk.session import State
from kiosk.ui.look import Look
from kiosk.ui.screens import BoothScreen, OnAction, load_kv

load_kv(__file__)


class EmergencyScreen(BoothScreen):
    """Also the out-of-service screen: both must always show where to get help.

    The title sits on the danger colour so the screen reads as urgent at a
    glance; the words say why, so colour is never the only signal.
    """

    band = ListProperty([0.0, 0.0, 0.0, 1.0])

    def show_more(self, view: View, look: Look, on_action: OnAction) -> None:
        urgent = view.state is State.EMERGENCY  # out of service is a notice, not an alarm
        self.band = list(look.rgba("danger" if urgent else "warning"))
        for label in self.ids.title.children:
            label.color = list(look.rgba("on_danger" if urgent else "on_warning"))
