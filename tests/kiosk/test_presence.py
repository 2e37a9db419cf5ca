"""The hub's view of a booth follows the visit, with the emergency first."""

from __future__ import annotations

from dataclasses import replace

from clinic.protocol import BoothState, Door
from kiosk.presence import summary
from kiosk.session import Booth, State


def test_each_kind_of_state_has_its_summary() -> None:
    assert summary(Booth()) == (BoothState.IDLE, Door.CLOSED)
    assert summary(Booth(state=State.WAITING)) == (BoothState.IN_USE, Door.CLOSED)
    assert summary(Booth(state=State.IN_CALL, door_open=True)) == (BoothState.IN_USE, Door.OPEN)
    assert summary(Booth(state=State.OUT_OF_SERVICE))[0] is BoothState.OUT_OF_SERVICE
    assert summary(Booth(state=State.TECHNICIAN))[0] is BoothState.OUT_OF_SERVICE


def test_an_emergency_shows_over_everything() -> None:
    calling = Booth(state=State.EMERGENCY, resume=State.IN_CALL, emergency=True)
    assert summary(calling)[0] is BoothState.EMERGENCY
    assert summary(replace(calling, state=State.TECHNICIAN))[0] is BoothState.EMERGENCY
