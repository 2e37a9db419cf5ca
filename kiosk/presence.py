"""What the hub is told of the booth between and during visits: a summary, never the visit.

The console's booth list needs to know whether a booth is free, in use, out
of service or in an emergency, and whether its door is open. It needs nothing
else: not the screen, the language or anything the resident did.
"""

from __future__ import annotations

from clinic.protocol import BoothState, Door
from kiosk.session import Booth, State


def summary(booth: Booth) -> tuple[BoothState, Door]:
    """The booth's presence as the hub shows it, from the visit's state."""
    if booth.emergency:
        state = BoothState.EMERGENCY
    elif booth.state in (State.OUT_OF_SERVICE, State.TECHNICIAN):
        state = BoothState.OUT_OF_SERVICE
    elif booth.in_visit:
        state = BoothState.IN_USE
    else:
        state = BoothState.IDLE
    return state, Door.OPEN if booth.door_open else Door.CLOSED
