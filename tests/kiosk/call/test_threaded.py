"""The call on its own thread: a whole call through it, every crossing back to the booth's loop.

What the thread buys (full frame rates and a quick start while the screen
draws) is measured by ``tests/perf/bench_call.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kiosk import session
from kiosk.call.engine import CallStatus
from kiosk.call.threaded import ThreadedCallEngine
from tests.kiosk.call.peers import BLACK_LUMA, booth_call, eventually


def test_a_whole_call_through_the_call_thread() -> None:
    async def main() -> None:
        async with booth_call(engine_class=ThreadedCallEngine) as b:  # type: ignore[arg-type]
            engine: Any = b.engine
            assert isinstance(engine, ThreadedCallEngine)
            main_thread = threading.get_ident()
            posted_on: set[int] = set()
            post = engine._post
            engine._post = lambda e: (posted_on.add(threading.get_ident()), post(e))
            b.hub.start_call()
            await eventually(lambda: b.posted(session.ClinicianAnswered) == 1, 2.0)
            await engine.accept_call()
            await eventually(lambda: engine.status is CallStatus.CONNECTED, 5.0, "connected")
            await asyncio.sleep(1.0)
            got = b.clinician.got
            assert len(got.video) >= 10 and min(luma for _, luma, _, _ in got.video) > BLACK_LUMA
            picture = engine.remote_frame()
            assert picture is not None and (picture.width, picture.height) == (320, 240)
            assert b.speaker.samples > 20_000
            assert b.hub.booth.in_call, "the link hears of the call on its own loop"
            await engine.pause_media()
            t = asyncio.get_running_loop().time() + 0.5
            await asyncio.sleep(1.0)
            assert all(luma <= BLACK_LUMA for _, luma, _, _ in got.video_since(t)), "black"
            await engine.end_call()
            assert engine.status is CallStatus.IDLE and not b.hub.booth.in_call
            assert posted_on == {main_thread}, "the visit only ever hears on its own loop"
        assert not engine.thread.alive, "closing stops the call thread"

    asyncio.run(main())
