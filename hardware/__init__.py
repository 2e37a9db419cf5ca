"""Booth hardware behind small interfaces, each with a simulated twin.

Devices are named for their role in the booth (door, emergency button,
occupancy light), not for the electronics. Nothing here imports Kivy or
knows about visits; hardware reports what happened as the small event
objects in :mod:`hardware.events`.
"""
