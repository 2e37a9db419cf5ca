"""Pictures between the booth's own form (RGB, rows bottom-up) and PyAV's (rows top-down)."""

from __future__ import annotations

import numpy as np
import pytest

from hardware.camera import Frame
from kiosk.call.tracks import to_frame, to_video_frame


@pytest.mark.parametrize("size", [(4, 3), (640, 480), (322, 242)])  # odd widths pad the lines
def test_a_picture_goes_out_the_right_way_up_and_comes_back_the_same(size: tuple[int, int]) -> None:
    width, height = size
    rows = np.arange(height * width * 3, dtype=np.uint32).astype(np.uint8)
    rgb = rows.reshape(height, width, 3)
    picture = Frame(width, height, rgb.tobytes())  # row 0 is the bottom one

    out = to_video_frame(picture).to_ndarray(format="rgb24")
    assert (out[0] == rgb[-1]).all() and (out[-1] == rgb[0]).all()  # top row first
    assert (out[::-1] == rgb).all()
    assert to_frame(to_video_frame(picture)) == picture
