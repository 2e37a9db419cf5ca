"""``kiosk-provision enroll`` against a real hub on loopback: the key pair, the code (good,
wrong, used, expired), the booth id already taken, the pinned certificate (and its
twin without the pin), an unreachable hub, and a credential that then opens a booth
``hello`` on the hub."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic import protocol
from clinic.protocol import Error, Hello, Welcome, new_id
from clinic.server import create_app
from kiosk.config import load, read_credential
from provisioning import enroll as enroll_module
from provisioning.bundle import enrollment_code_path
from provisioning.cli import main
from provisioning.enroll import EnrollError, enroll_url, register, with_credential_file
from provisioning.layout import Layout
from tests.clinic.hubtest import T0, Clock, Db, Tls, make_tls, open_db

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "booth.toml"
R = TypeVar("R")


@dataclass
class ThreadHub:
    """A real hub (the clinic's aiohttp app over TLS) serving from its own thread."""

    port: int
    tls: Tls
    db: Db
    clock: Clock
    loop: asyncio.AbstractEventLoop

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/booth"

    def code(self, lifetime: float = 3600.0) -> str:
        return self.db.store.new_enrollment_code(self.clock.now, lifetime=lifetime)

    def call(self, coro: Coroutine[Any, Any, R]) -> R:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)


@contextlib.contextmanager
def hub_thread(folder: Path) -> Iterator[ThreadHub]:
    folder.mkdir(parents=True, exist_ok=True)
    tls = make_tls(folder / "tls")
    db = open_db(folder / "hub.sqlite3")
    clock = Clock(T0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[web.AppRunner, int]:
        app = create_app(db.store, turn=None, clock=clock)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server())
        await site.start()
        return runner, runner.addresses[0][1]

    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield ThreadHub(port, tls, db, clock, loop)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        db.store.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[ThreadHub]:
    with hub_thread(tmp_path / "hub") as running:
        yield running


def booth_toml(
    url: str, fingerprint: str, *, credential_line: bool = False, booth_id: str = ""
) -> str:
    """examples/booth.toml pointed at ``url`` with ``fingerprint`` pinned."""
    text = EXAMPLE.read_text(encoding="utf-8")
    if booth_id:
        text = text.replace('id = "riverside-library-1"', f'id = "{booth_id}"')
    text = text.replace("wss://hub.example.org/booth", url)
    text = text.replace("0" * 64, fingerprint)
    if not credential_line:
        text = text.replace('credential_file = "/etc/telehealth-kiosk/hub-credential"\n', "")
    return text


def booth_root(tmp_path: Path, hub: ThreadHub, **kw: Any) -> Layout:
    """A booth root with its configuration written by ``init --from``."""
    layout = Layout(tmp_path / "booth")
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "source.toml"
    source.write_text(booth_toml(hub.url, hub.tls.fingerprint, **kw), encoding="utf-8")
    assert main(["init", "--root", str(layout.root), "--from", str(source)]) == 0
    return layout


def enroll_cli(layout: Layout, code: str) -> int:
    return main(["enroll", "--root", str(layout.root), "--code", code])


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def say_hello(hub: ThreadHub, booth_id: str, token: str) -> protocol.Message:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(hub.url, ssl=hub.tls.client()) as ws,
    ):
        await ws.send_str(
            protocol.encode(Hello(id=new_id(), booth_id=booth_id, token=token, firmware="0.1.0"))
        )
        msg = await ws.receive(timeout=5)
        return protocol.parse(msg.data, sender="hub")


# ---------------------------------------------------------------- success


@pytest.mark.parametrize("credential_line", [False, True], ids=["added", "replaced"])
def test_enroll_makes_a_private_key_stores_the_credential_and_it_opens_a_hello(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str], credential_line: bool
) -> None:
    layout = booth_root(tmp_path, hub, credential_line=credential_line)
    before = layout.config.read_text(encoding="utf-8")
    code = hub.code()
    assert enroll_cli(layout, code) == 0
    assert "Enrolled booth riverside-library-1" in capsys.readouterr().out

    # The key is the booth's own, private, and the hub holds its public half.
    assert mode(layout.identity_key) == 0o600
    key = serialization.load_pem_private_key(layout.identity_key.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert hub.db.store.booth_public_key("riverside-library-1") == public
    # Where the booth stands came from its configuration, for staff in an emergency.
    booth = hub.db.store.booth("riverside-library-1")
    assert booth is not None
    assert booth.address == "100 Example Street, Riverside, CA 92501"
    assert booth.room.startswith("Second floor, Room 204")

    # The credential is private, the config points at it and keeps its comments.
    assert mode(layout.credential) == 0o600
    assert mode(layout.config) == 0o640
    after = layout.config.read_text(encoding="utf-8")
    assert "# required. The booth's name as clinicians and staff see it" in after
    assert len(after.splitlines()) == len(before.splitlines()) + (0 if credential_line else 1)
    config = load(layout.config)
    assert config.hub.credential_file == layout.credential
    token = read_credential(config.hub)
    assert token is not None

    # The hub accepts that credential for this booth.
    assert isinstance(hub.call(say_hello(hub, "riverside-library-1", token)), Welcome)
    refused = hub.call(say_hello(hub, "riverside-library-1", token[:-2] + "xx"))
    assert isinstance(refused, Error)
    assert refused.code is protocol.ErrorCode.UNAUTHORIZED


def test_a_booth_enrolled_already_is_not_enrolled_again(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    assert enroll_cli(layout, hub.code()) == 0
    credential = layout.credential.read_bytes()
    capsys.readouterr()
    assert enroll_cli(layout, hub.code()) == 1
    err = capsys.readouterr().err
    assert "enrolled already" in err
    assert "`kiosk-provision reset` first" in err
    assert layout.credential.read_bytes() == credential


# ------------------------------------------------------------ refusals


def refused(layout: Layout, code: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert enroll_cli(layout, code) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert not layout.credential.exists()
    assert load(layout.config).hub.credential_file is None
    return captured.err


def test_a_wrong_code_says_to_check_it_or_get_a_new_one(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    hub.code()
    message = refused(layout, "ABCD-EFGH-JKMN", capsys)
    assert "kiosk-provision enroll: the hub does not know that enrollment code" in message
    assert "clinic-hub enroll-code" in message


def test_a_code_that_is_not_even_shaped_like_one_is_refused_before_the_hub(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    message = refused(layout, "12345", capsys)
    assert "an enrollment code is 12 letters and digits" in message
    assert not layout.identity_key.exists()  # nothing was done


def test_a_used_code_is_refused_as_used(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    first = booth_root(tmp_path / "first", hub)
    code = hub.code()
    assert enroll_cli(first, code) == 0
    layout = booth_root(tmp_path / "second", hub, booth_id="riverside-2")
    message = refused(layout, code, capsys)
    assert "that enrollment code was used already" in message
    assert "ask the hub's admin for a new one (`clinic-hub enroll-code`)" in message
    assert hub.db.store.booth("riverside-2") is None


def test_an_expired_code_is_refused_as_expired(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    code = hub.code(lifetime=60)
    hub.clock.now = T0 + 61
    message = refused(layout, code, capsys)
    assert "that enrollment code has expired" in message
    assert "clinic-hub enroll-code" in message


def test_a_booth_id_the_hub_has_is_refused_and_the_code_is_kept(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    text = layout.config.read_text(encoding="utf-8")
    layout.config.write_text(text.replace("riverside-library-1", "booth-1"), encoding="utf-8")
    code = hub.code()
    message = refused(layout, code, capsys)
    assert 'the hub already has a booth "booth-1"' in message
    assert "[booth] id" in message
    # The code still works, once the booth has an id of its own.
    layout.config.write_text(text, encoding="utf-8")
    assert enroll_cli(layout, code) == 0


def test_an_unreachable_hub_says_to_check_the_network(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    layout = booth_root(tmp_path, hub)
    text = layout.config.read_text(encoding="utf-8")
    layout.config.write_text(text.replace(f":{hub.port}/", f":{port}/"), encoding="utf-8")
    message = refused(layout, hub.code(), capsys)
    assert f"cannot reach the hub at https://127.0.0.1:{port}/enroll" in message
    assert "check the booth's network" in message


def test_a_missing_configuration_says_to_run_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enroll", "--root", str(tmp_path), "--code", "ABCD-EFGH-JKMN"]) == 1
    err = capsys.readouterr().err
    assert "booth.toml: no such file" in err
    assert "kiosk-provision init" in err


# ------------------------------------------------------- the pinned certificate


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "pin-off"])
def test_a_hub_whose_certificate_does_not_match_the_pin_gets_nothing(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str], pin: bool
) -> None:
    """Another hub (its own certificate) at the configured address: refused before the code
    is sent. The twin, with the pin check off, enrolls with it: the pin is what protects."""
    with hub_thread(tmp_path / "impostor") as impostor:
        layout = Layout(tmp_path / "booth")
        source = tmp_path / "source.toml"
        source.write_text(booth_toml(impostor.url, hub.tls.fingerprint), encoding="utf-8")
        assert main(["init", "--root", str(layout.root), "--from", str(source)]) == 0
        config = load(layout.config)
        code = impostor.code()
        key = Ed25519PrivateKey.generate()
        if pin:
            with pytest.raises(EnrollError) as caught:
                asyncio.run(register(config, code, key))
            message = str(caught.value)
            assert f"SHA-256 is {impostor.tls.fingerprint}" in message
            assert f"expects {hub.tls.fingerprint}" in message
            assert "nothing was sent" in message
            assert impostor.db.store.booth("riverside-library-1") is None
            # Through the command, the technician sees the same.
            capsys.readouterr()
            assert enroll_cli(layout, impostor.code()) == 1
            err = capsys.readouterr().err
            assert impostor.tls.fingerprint in err and hub.tls.fingerprint in err
        else:
            credential = asyncio.run(register(config, code, key, verify_pin=False))
            assert impostor.db.store.verify_booth("riverside-library-1", credential) is not None


def test_enroll_over_the_console_script_with_the_code_typed_in(
    tmp_path: Path, hub: ThreadHub
) -> None:
    """The real command in its own process, the code read from standard input."""
    import subprocess
    import sys

    layout = booth_root(tmp_path, hub)
    done = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "enroll", "--root", str(layout.root)],
        input=hub.code().lower() + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Enrollment code" in done.stderr
    assert read_credential(load(layout.config).hub) is not None


# ------------------------------------------------------------- pieces


def test_the_enroll_address_follows_the_booth_address() -> None:
    assert enroll_url("wss://hub.example.org/booth") == "https://hub.example.org/enroll"
    assert enroll_url("wss://hub.example.org:8443/booth") == "https://hub.example.org:8443/enroll"
    assert enroll_url("wss://example.org/clinic/booth") == "https://example.org/clinic/enroll"
    assert enroll_url("wss://[::1]:8443") == "https://[::1]:8443/enroll"


def test_credential_file_is_set_in_a_hub_table_written_inline() -> None:
    document = 'hub = { url = "wss://h/booth", certificate_sha256 = "ab" }\n'
    edited = with_credential_file(document, Path("/etc/telehealth-kiosk/hub-credential"))
    import tomllib

    assert tomllib.loads(edited)["hub"] == {
        "url": "wss://h/booth",
        "certificate_sha256": "ab",
        "credential_file": "/etc/telehealth-kiosk/hub-credential",
    }


def test_a_damaged_key_file_says_to_reset(tmp_path: Path) -> None:
    key = tmp_path / "booth-key.pem"
    key.write_text("not a key", encoding="utf-8")
    with pytest.raises(EnrollError, match="kiosk-provision reset"):
        enroll_module.load_or_make_key(key)


# ------------------------------------------------ the code a technician bundle left


def leave_bundle_code(layout: Layout, code: str) -> Path:
    path = enrollment_code_path(layout)
    path.write_text(code + "\n", encoding="ascii")
    path.chmod(0o600)
    return path


def enroll_without_code(layout: Layout) -> int:
    return main(["enroll", "--root", str(layout.root)])


def test_the_code_a_bundle_left_is_used_and_then_deleted(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    saved = leave_bundle_code(layout, hub.code())
    capsys.readouterr()
    assert enroll_without_code(layout) == 0
    captured = capsys.readouterr()
    assert "Using the enrollment code from the technician bundle" in captured.err
    assert f"Deleted {saved}" in captured.err
    assert "Enrolled booth riverside-library-1" in captured.out
    assert not saved.exists()
    assert hub.db.store.booth("riverside-library-1") is not None


@pytest.mark.parametrize("spent", ["wrong", "used", "expired"])
def test_a_bundle_code_the_hub_refuses_as_spent_is_deleted(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str], spent: str
) -> None:
    layout = booth_root(tmp_path, hub)
    if spent == "wrong":
        code = "ABCD-EFGH-JKMN"
    elif spent == "used":
        code = hub.code()
        assert enroll_cli(booth_root(tmp_path / "other", hub, booth_id="riverside-2"), code) == 0
    else:
        code = hub.code(lifetime=60)
        hub.clock.now += 61
    saved = leave_bundle_code(layout, code)
    message = refused_without_code(layout, capsys)
    assert "Using the enrollment code from the technician bundle" in message
    assert f"Deleted {saved}: that code cannot be used again." in message
    assert not saved.exists()


def refused_without_code(layout: Layout, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert enroll_without_code(layout) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert not layout.credential.exists()
    return captured.err


@pytest.mark.parametrize("why", ["booth_id_taken", "hub_down"])
def test_a_bundle_code_still_good_is_kept_for_the_next_try(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str], why: str
) -> None:
    """The twin of the deletion: a refusal that leaves the code good must not lose it."""
    layout = booth_root(tmp_path, hub)
    code = hub.code()
    if why == "booth_id_taken":
        hub.db.store.add_booth(
            "riverside-library-1", name="Old", site="Old site", address="1 Old St", room="1"
        )
    else:
        text = layout.config.read_text(encoding="utf-8")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        layout.config.write_text(text.replace(f":{hub.port}/", f":{free}/"), encoding="utf-8")
    saved = leave_bundle_code(layout, code)
    message = refused_without_code(layout, capsys)
    assert "Deleted" not in message
    assert saved.read_text().strip() == code
    if why == "booth_id_taken":
        assert "`clinic-hub remove-booth riverside-library-1`" in message
        # What the message says to do, done: the id is free and the saved code enrolls.
        hub.db.store.remove_booth("riverside-library-1")
        assert enroll_without_code(layout) == 0
        assert not saved.exists()


def test_a_typed_code_wins_over_the_bundle_code(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    saved = leave_bundle_code(layout, "ABCD-EFGH-JKMN")
    assert enroll_cli(layout, hub.code()) == 0
    assert "technician bundle" not in capsys.readouterr().err
    assert saved.exists()  # not used, so not spent


# ---------------------------------------------- a booth removed at the hub, enrolled again


def test_a_removed_booth_is_refused_at_hello_and_enrolls_again(
    tmp_path: Path, hub: ThreadHub, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = booth_root(tmp_path, hub)
    assert enroll_cli(layout, hub.code()) == 0
    token = read_credential(load(layout.config).hub)
    assert token is not None
    assert isinstance(hub.call(say_hello(hub, "riverside-library-1", token)), Welcome)

    assert hub.db.store.remove_booth("riverside-library-1") == 0
    answer = hub.call(say_hello(hub, "riverside-library-1", token))
    assert isinstance(answer, Error)
    assert answer.code is protocol.ErrorCode.UNAUTHORIZED

    # kiosk-provision reset names the hub command; then the booth enrolls under its old id.
    capsys.readouterr()
    assert main(["reset", "--root", str(layout.root), "--yes"]) == 0
    assert "`clinic-hub remove-booth riverside-library-1`" in capsys.readouterr().out
    layout = booth_root(tmp_path / "again", hub)
    assert enroll_cli(layout, hub.code()) == 0
    new_token = read_credential(load(layout.config).hub)
    assert new_token is not None and new_token != token
    assert isinstance(hub.call(say_hello(hub, "riverside-library-1", new_token)), Welcome)
