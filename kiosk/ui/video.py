"""Pictures on the screen: a texture that takes a frame only when it is a new one.

Without a GPU (Mesa's llvmpipe on a laptop or in CI) every redraw of the
window costs the CPU far more than the picture in it: measured by
``tests/perf/bench_call.py``, about 12 ms of CPU a frame for a 1024x600
call screen (llvmpipe and Kivy together), of which uploading the picture is
well under one. So the screen is redrawn only when a picture it shows
changed, never because the clock ticked.
"""

from __future__ import annotations

from typing import Any

from hardware.camera import Frame


class Picture:
    """One picture on the screen (the clinician, or the resident's self-view)."""

    def __init__(self) -> None:
        self.texture: Any = None
        self._frame: Frame | None = None
        self.shown = 0
        """Pictures put in the texture so far (the call benchmark's frame rate)."""

    def update(self, frame: Frame | None) -> bool:
        """Take ``frame`` if it is not the one shown already; True when the texture changed.

        The camera and the call engine hand out the same :class:`Frame` until
        a newer one arrives, so an unchanged picture is neither uploaded nor
        drawn again.
        """
        if frame is self._frame:
            return False
        self._frame = frame
        if frame is None:
            self.texture = None
            return True
        self.texture = show(frame, self.texture)
        self.shown += 1
        return True

    def clear(self) -> None:
        """Let go of the picture (no picture of a resident or clinician is kept after)."""
        self.texture = None
        self._frame = None


def show(frame: Frame, texture: Any) -> Any:
    """``frame`` in ``texture`` (a new one when the size changed)."""
    from kivy.graphics.texture import Texture

    if texture is None or tuple(texture.size) != (frame.width, frame.height):
        texture = Texture.create(size=(frame.width, frame.height), colorfmt="rgb")
    texture.blit_buffer(frame.rgb, colorfmt="rgb", bufferfmt="ubyte")
    return texture
