"""The camera and microphone as the visit uses them: open for the device check
and the call, closed otherwise, and previewed on the booth's own screen.

This is the controller's :class:`kiosk.controller.MediaDevices` port. The
call engine takes its media from the same devices; here the booth only looks
(self-view) and listens for a level (the moving bar).
"""

from __future__ import annotations

from hardware.audio import Microphone
from hardware.camera import Camera, Frame


class LocalMedia:
    """Opens and closes the booth's camera and microphone together."""

    def __init__(self, camera: Camera | None, microphone: Microphone | None) -> None:
        self.camera = camera
        self.microphone = microphone
        self.camera_on = False
        self.microphone_on = False

    async def open(self, audio_only: bool) -> None:
        if self.microphone is not None and not self.microphone_on:
            self.microphone.open()
            self.microphone_on = True
        if self.camera is not None and not audio_only and not self.camera_on:
            self.camera.open()
            self.camera_on = True

    async def close(self) -> None:
        if self.camera is not None and self.camera_on:
            self.camera.close()
        if self.microphone is not None and self.microphone_on:
            self.microphone.close()
        self.camera_on = self.microphone_on = False

    def preview(self) -> Frame | None:
        """The newest camera frame, or None when the camera is closed or absent."""
        if self.camera is None or not self.camera_on:
            return None
        return self.camera.latest()

    def level(self) -> float:
        if self.microphone is None or not self.microphone_on:
            return 0.0
        return self.microphone.level()
