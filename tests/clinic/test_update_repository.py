"""``clinic-hub serve --dev --updates DIR``: a laptop's hub serves a signed update
repository, and a booth updates from it through the real updater; only files below
``metadata/`` and ``targets/`` are served (no listing, no way out of the folder)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinic.server import DEV_CERT_NAME
from provisioning.update.updater import Result
from tests.provisioning.update.helpers import Clock, Publisher, install_booth, updater

ROOT = Path(__file__).resolve().parents[2]
HUB = Path(sys.executable).with_name("clinic-hub")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Publisher]]:
    """A repository with 1.0.0 and 2.0.0, served by a real `clinic-hub serve --dev --updates`."""
    base = tmp_path_factory.mktemp("hub")
    publisher = Publisher(base / "pub", Clock())
    publisher.server.stop()  # the hub serves it instead
    publisher.publish("1.0.0")
    (base / "outside.txt").write_text("not for the booth")
    os.symlink(base / "outside.txt", publisher.repo.path / "targets" / "escape.json")
    port = free_port()
    db = base / "hub" / "hub.db"
    db.parent.mkdir()
    proc = subprocess.Popen(
        [str(HUB), "--db", str(db), "serve", "--dev", "--port", str(port),
         "--updates", str(publisher.repo.path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        url = f"https://127.0.0.1:{port}/updates/"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the hub did not start"
                time.sleep(0.1)
        yield url, db.parent / "dev-tls" / DEV_CERT_NAME, publisher
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def get(url: str, cert: Path, **headers: str) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=str(cert))
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


def test_a_booth_updates_from_the_dev_hub(hub: tuple[str, Path, Publisher], tmp_path: Path) -> None:
    url, cert, publisher = hub
    layout = install_booth(tmp_path / "booth", publisher.root / "telehealth-kiosk-1.0.0.tar")
    publisher.publish("2.0.0")
    outcome = updater(layout, publisher, publisher.clock, repository=url, ca_file=cert).run()
    assert outcome.result is Result.UPDATED, outcome
    assert os.readlink(layout.current) == "releases/2.0.0"


def test_twin_the_same_booth_without_the_hubs_repository(
    hub: tuple[str, Path, Publisher], tmp_path: Path
) -> None:
    """What makes it work is /updates/: the hub's root URL serves no repository."""
    url, cert, publisher = hub
    layout = install_booth(tmp_path / "booth", publisher.root / "telehealth-kiosk-1.0.0.tar")
    root_url = url.removesuffix("updates/")
    outcome = updater(layout, publisher, publisher.clock, repository=root_url, ca_file=cert).run()
    assert outcome.result is Result.FAILED and "HTTP 404" in outcome.message, outcome


def test_only_the_repository_files_are_served(hub: tuple[str, Path, Publisher]) -> None:
    url, cert, publisher = hub
    status, headers, body = get(url + "metadata/1.root.json", cert)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == (publisher.repo.path / "metadata" / "1.root.json").read_bytes()
    bundle = sorted((publisher.repo.path / "targets" / "bundles").glob("*.tar"))[0]
    path = f"targets/bundles/{bundle.name}"
    status, headers, body = get(url + path, cert, Range="bytes=100-")
    assert status == 206 and headers["Content-Type"] == "application/x-tar"
    assert body == bundle.read_bytes()[100:]
    for bad in (
        "metadata/",  # no listing
        "targets/bundles/",
        "metadata/..%2f..%2foutside.txt",
        "metadata/%2e%2e/%2e%2e/outside.txt",
        "keys/root.pem",  # only metadata/ and targets/
        "repository.json",
        "targets/escape.json",  # a symlink out of the folder
        "metadata/.hidden",
    ):
        assert get(url + bad, cert)[0] == 404, bad
    assert get(url.removesuffix("updates/") + "updates/../../outside.txt", cert)[0] == 404
