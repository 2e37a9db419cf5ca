"""Release bundles: what a release is on the wire, and how one becomes ``releases/<version>``.

A bundle is an uncompressed tar holding exactly::

    manifest.json          {"format": 1, "project": "telehealth-kiosk", "version": "1.4.0",
                            "wheels": {"<file>.whl": "<sha256>", ...}}
    wheels/<file>.whl      the project's wheel and every dependency's, for the booth's platform
    trust/root.json        the TUF root the release trusts (shipped read-only in the release)
    trust/repository.json  {"metadata_url": ..., "targets_url": ...} where updates come from

Installing never touches the network (``pip --no-index`` from the bundle's
wheels) and never touches another release: the new virtual environment is made
in its own folder beside the running one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from provisioning.layout import Layout
from provisioning.update import UpdateError
from provisioning.update.fsio import TMP_SUFFIX, StepHook, fsync_tree, no_steps

FORMAT: Final = 1
PROJECT: Final = "telehealth-kiosk"
WHEEL_PREFIX: Final = "telehealth_kiosk-"
MAX_BUNDLE_BYTES: Final = 1 << 30
"""Refuse anything bigger before downloading it (a release is ~200 MB of wheels)."""
MAX_MEMBERS: Final = 500
TRUST_DIR: Final = Path("share/telehealth-kiosk-update")
"""Inside a release: the trusted root and repository address it shipped with (read-only)."""
ROOT_FILE: Final = "root.json"
SOURCE_FILE: Final = "repository.json"
PIP_TIMEOUT_S: Final = 900

_VERSION = re.compile(r"(0|[1-9]\d{0,5})(\.(0|[1-9]\d{0,5})){1,3}")
_WHEEL = re.compile(r"[A-Za-z0-9_.+-]{1,200}\.whl")


def parse_version(text: object, where: str = "version") -> tuple[int, ...]:
    """``"1.4.0"`` → ``(1, 4, 0)``; releases are numbered plainly so the order is never in doubt."""
    if not isinstance(text, str) or not _VERSION.fullmatch(text):
        raise UpdateError(
            f'{where}: must be numbers separated by dots such as "1.4.0", not {text!r}'
        )
    assert isinstance(text, str)
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True)
class Manifest:
    version: str
    wheels: Mapping[str, str]
    """wheel file name → sha256 hex"""

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "project": PROJECT,
            "version": self.version,
            "wheels": dict(sorted(self.wheels.items())),
        }
        return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Manifest:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UpdateError(f"{where}: manifest.json is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UpdateError(f"{where}: manifest.json must be an object")
        if data.get("format") != FORMAT or data.get("project") != PROJECT:
            raise UpdateError(
                f"{where}: manifest.json is not a {PROJECT} bundle of format {FORMAT} "
                f"(format={data.get('format')!r}, project={data.get('project')!r})"
            )
        parse_version(data.get("version"), f"{where}: manifest.json version")
        version: str = data["version"]
        wheels = data.get("wheels")
        if not isinstance(wheels, dict) or not wheels:
            raise UpdateError(f"{where}: manifest.json wheels must list the bundle's wheels")
        for name, digest in wheels.items():
            if not _WHEEL.fullmatch(name) or not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
                raise UpdateError(f"{where}: manifest.json wheels: bad entry {name!r}")
        project = [n for n in wheels if n.startswith(f"{WHEEL_PREFIX}{version}-")]
        if len(project) != 1:
            raise UpdateError(
                f"{where}: the bundle must hold exactly one {WHEEL_PREFIX}{version}-*.whl "
                "(the project's own wheel of the manifest's version)"
            )
        return cls(version, dict(wheels))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_bundle(
    wheels: Sequence[Path], version: str, out: Path, root: bytes, source: Mapping[str, str]
) -> Manifest:
    """Write a bundle of ``wheels`` for ``version``; the project's own wheel must be among them."""
    parse_version(version)
    contents: dict[str, bytes] = {}
    for wheel in wheels:
        if not _WHEEL.fullmatch(wheel.name):
            raise UpdateError(f"{wheel}: not a wheel file name (expected name-version-tags.whl)")
        contents[wheel.name] = wheel.read_bytes()
    manifest = Manifest(version, {name: _sha256(data) for name, data in contents.items()})
    Manifest.from_json(manifest.to_json(), str(out))  # the same checks the booth makes
    members = {"manifest.json": manifest.to_json()}
    members |= {f"wheels/{name}": data for name, data in sorted(contents.items())}
    members["trust/" + ROOT_FILE] = root
    members["trust/" + SOURCE_FILE] = json.dumps(dict(source), indent=1).encode() + b"\n"
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0  # the same wheels make the same bundle
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return manifest


def extract_bundle(bundle: Path, into: Path) -> Manifest:
    """Check a bundle and unpack it into ``into``; refuses anything but the expected members."""
    where = str(bundle)
    allowed = {"manifest.json", "trust/" + ROOT_FILE, "trust/" + SOURCE_FILE}
    seen: dict[str, bytes] = {}
    try:
        with tarfile.open(bundle, "r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise UpdateError(f"{where}: more than {MAX_MEMBERS} members")
                name = member.name
                is_wheel = name.startswith("wheels/") and _WHEEL.fullmatch(name[7:]) is not None
                if not member.isfile() or (name not in allowed and not is_wheel):
                    raise UpdateError(f"{where}: unexpected member {name!r} (not a bundle)")
                if name in seen:
                    raise UpdateError(f"{where}: member {name!r} appears twice")
                handle = tar.extractfile(member)
                assert handle is not None
                seen[name] = handle.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UpdateError(f"{where}: not a readable bundle ({exc})") from None
    if "manifest.json" not in seen:
        raise UpdateError(f"{where}: no manifest.json (not a bundle)")
    manifest = Manifest.from_json(seen["manifest.json"], where)
    wheels = {name[7:]: data for name, data in seen.items() if name.startswith("wheels/")}
    if set(wheels) != set(manifest.wheels):
        raise UpdateError(f"{where}: the wheels differ from those manifest.json lists")
    for name, data in wheels.items():
        if _sha256(data) != manifest.wheels[name]:
            raise UpdateError(f"{where}: wheels/{name} does not match its sha256 in manifest.json")
    for name in ("trust/" + ROOT_FILE, "trust/" + SOURCE_FILE):
        if name not in seen:
            raise UpdateError(f"{where}: no {name}")
    _source(seen["trust/" + SOURCE_FILE], where)
    for name, data in seen.items():
        path = into / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return manifest


def _source(raw: bytes, where: str) -> dict[str, str]:
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) and data[k].startswith(("https://", "http://"))
        for k in ("metadata_url", "targets_url")
    ):
        raise UpdateError(
            f"{where}: {SOURCE_FILE} must give metadata_url and targets_url (http or https)"
        )
    return {"metadata_url": data["metadata_url"], "targets_url": data["targets_url"]}


def read_source(release: Path) -> dict[str, str]:
    """The repository address a release shipped with."""
    path = release / TRUST_DIR / SOURCE_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UpdateError(
            f"{path}: cannot be read ({exc.strerror}); the running release has no update "
            "source: reinstall it from a bundle, or give --repository"
        ) from None
    return _source(raw, str(path))


def pip_command(python: Path, wheels: Path) -> list[str]:
    """pip from the bundle's own pip wheel when it has one, else the running interpreter's."""
    pips = sorted(wheels.glob("pip-*.whl"))
    if pips:
        return [str(python), str(pips[-1] / "pip")]
    return [sys.executable, "-m", "pip", "--python", str(python)]


def install_release(
    bundle: Path, layout: Layout, steps: StepHook = no_steps, *, expect: str | None = None
) -> str:
    """Make ``releases/<version>`` from a bundle: a fresh venv, wheels installed offline.

    Never changes an existing release: the caller removes an unfinished one
    first. Returns the version. ``expect`` refuses a bundle of another version
    (the updater's check that the signed index and the bundle agree).
    """
    layout.releases.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle-", suffix=TMP_SUFFIX, dir=layout.app) as tmp:
        work = Path(tmp)
        manifest = extract_bundle(bundle, work)
        version = manifest.version
        if expect is not None and version != expect:
            raise UpdateError(
                f"{bundle}: holds version {version}, but the channel names {expect}; not installed"
            )
        target = layout.release(version)
        if target.exists() or target.is_symlink():
            raise UpdateError(f"{target}: already exists; releases are never changed once made")
        steps(f"venv {version}")
        _run(
            [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(target)],
            "making the virtual environment",
        )
        python = target / "bin" / "python"
        steps(f"pip install {version}")
        _run(
            [
                *pip_command(python, work / "wheels"),
                "install",
                "--no-index",
                "--no-input",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--find-links",
                str(work / "wheels"),
                f"{PROJECT}=={version}",
            ],
            "installing the wheels",
        )
        trust = target / TRUST_DIR
        trust.mkdir(parents=True)
        for name in (ROOT_FILE, SOURCE_FILE):
            (trust / name).write_bytes((work / "trust" / name).read_bytes())
            (trust / name).chmod(0o444)
        _make_readable(target)
        steps(f"fsync {version}")
        fsync_tree(target)
    return version


def _make_readable(release: Path) -> None:
    """The booth runs as its own user: a release is readable (not writable) by everyone,
    whatever umask the updater runs with (its unit sets a private one)."""
    for folder, dirs, files in os.walk(release):
        Path(folder).chmod(0o755)
        for name in files:
            path = Path(folder, name)
            if path.is_symlink():
                continue
            mode = path.stat().st_mode & 0o777
            path.chmod((mode | 0o444 | (0o111 if mode & 0o100 else 0)) & ~0o022)
        del dirs  # walked by os.walk itself


def _run(command: list[str], doing: str) -> None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpdateError(f"{doing} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UpdateError(f"{doing} failed (exit {done.returncode}): {' | '.join(tail)}")
