"""Resumable downloads: a bundle cut off halfway is kept as ``<sha256>.part`` and the
next run asks only for the rest (HTTP Range); a server that ignores Range sends it all
again and the update still completes. Either way it is verified whole at the end."""

from __future__ import annotations

import hashlib
import http.server
import os

import pytest

from provisioning.update.updater import Result
from tests.provisioning.update.conftest import World
from tests.provisioning.update.helpers import Responder, updater


class Flaky:
    """Serves ``data``: the first answer stops halfway (the connection drops), later
    ones honour ``Range: bytes=N-`` with 206 unless ``honour_range`` is off."""

    def __init__(self, data: bytes, honour_range: bool) -> None:
        self.data = data
        self.honour_range = honour_range
        self.sent: list[int] = []
        self.ranges: list[str | None] = []

    def __call__(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        asked = handler.headers.get("Range")
        self.ranges.append(asked)
        start = 0
        if asked and self.honour_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
        body = self.data[start:]
        if not self.sent:
            body = body[: len(body) // 2]
        handler.send_response(206 if start else 200)
        handler.send_header("Content-Length", str(len(self.data) - start))
        if start:
            handler.send_header(
                "Content-Range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
            )
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
        handler.close_connection = True
        self.sent.append(len(body))


@pytest.mark.parametrize("honour", [True, False], ids=["range", "twin-server-ignores-range"])
def test_a_cut_download_continues_on_the_next_run(world: World, honour: bool) -> None:
    layout, pub, clock = world.layout, world.publisher, world.clock
    pub.publish("2.0.0")
    repo = pub.repo
    info = repo.targets().signed.targets["bundles/telehealth-kiosk-2.0.0.tar"]
    path = repo.target_file(info)
    data = path.read_bytes()
    flaky = Flaky(data, honour)
    serve: Responder = flaky
    pub.server.overrides[str(path.relative_to(repo.path))] = serve

    first = updater(layout, pub, clock).run()
    assert first.result is Result.FAILED and "next run" in first.message, first
    half = len(data) // 2
    partial = layout.update_state / "downloads" / f"{hashlib.sha256(data).hexdigest()}.part"
    assert partial.read_bytes() == data[:half]

    second = updater(layout, pub, clock).run()
    assert second.result is Result.UPDATED, second
    assert os.readlink(layout.current) == "releases/2.0.0"
    assert not partial.exists()
    if honour:
        assert flaky.ranges == [None, f"bytes={half}-"]
        assert flaky.sent == [half, len(data) - half]  # only the rest the second time
    else:
        assert flaky.ranges == [None, f"bytes={half}-"]
        assert flaky.sent == [half, len(data)]  # all of it again, and still installed
