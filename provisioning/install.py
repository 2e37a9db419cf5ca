"""``kiosk-provision install``: lay out a booth on Raspberry Pi OS, idempotently.

The install is a *plan*: a list of :class:`Step` objects, each one change that
is still needed (a step whose result is already in place is not in the plan).
``--dry-run`` prints the plan; otherwise each step runs in order, and a step
that fails stops the install with an error naming the step and the fix. Run
twice, the second plan is empty and the tool says so.

What it does (paths from :mod:`provisioning.layout`):

- apt packages: cage, PipeWire with its echo-cancel module, python3-venv, and
  on a Pi python3-lgpio (gpiozero's pin library) and python3-picamera2;
- the ``kiosk`` user, with a locked password and no login shell;
- ``/opt/telehealth-kiosk/releases/<version>``: a virtual environment made
  with ``--system-site-packages`` (so it sees the system's picamera2,
  libcamera and lgpio), with the booth's wheel installed by this tool's own pip
  (``pip --python``; the release carries no pip, it is never changed); a marker
  file is written last, so an interrupted install is recognised and redone;
- ``current`` pointed at that release by renaming a new link over it
  (:func:`switch_current`): the units never see it missing;
- the files in ``systemd/`` (units, journald and coredump settings, the PAM
  service, the PipeWire echo-cancel drop-in, swap off, the USB provisioning bundle
  units, udev rule and tmpfiles entry), the booth unit and the bundle apply path
  unit enabled, ``getty@tty1`` and ``dphys-swapfile`` masked;
- each ``--provisioning-key FILE`` as
  ``/etc/telehealth-kiosk/provisioning-keys/<key id>.pub``: USB bundles signed
  with it are accepted by a running booth;
- on a booth: ``systemctl daemon-reload``, journald restarted, swap turned off.

``--root DIR`` installs into a folder instead of ``/``, for tests and for
preparing an image: everything that exists as files is done there, and what
only makes sense on a running system (apt, the user account, ownership,
``systemctl``, swap) is listed as "left for the booth" and not done. No real
user is ever created under ``--root``.
"""

from __future__ import annotations

import argparse
import grp
import hashlib
import importlib.util
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.commandline import EXIT_OK
from kiosk.errors import KioskError
from provisioning.layout import RELEASE_MARKER, USER, Layout

PROG = "kiosk-provision install"
PROJECT_WHEEL = "telehealth_kiosk"
"""The booth's distribution name as it appears in a wheel's file name."""
DEFAULT_PYTHON = Path("/usr/bin/python3")
"""Debian's Python: the one whose dist-packages hold picamera2, libcamera and lgpio."""
REPO_UNITS = Path(__file__).resolve().parents[1] / "systemd"
"""``systemd/`` beside this package, in a checkout or an editable install."""
INSTALLED_UNITS = Path(sys.prefix) / "share" / "telehealth-kiosk" / "systemd"
"""The same files as an installed wheel carries them (``data-files`` in pyproject.toml)."""


def default_units() -> Path:
    """A checkout's ``systemd/`` when there is one, else the installed release's copy."""
    return REPO_UNITS if REPO_UNITS.is_dir() else INSTALLED_UNITS


APT_ALWAYS = ("cage", "python3-venv", "pipewire", "wireplumber", "libspa-0.2-modules")
APT_PI_ONLY = ("python3-lgpio", "python3-picamera2")
"""Only Raspberry Pi OS carries these; plain Debian (a test machine) has no Pi pins or camera."""
USER_GROUPS = ("video", "render", "input", "audio", "gpio")
USER_HOME = Path("/home") / USER
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_!]*")

UNIT_FILES: tuple[tuple[str, str], ...] = (
    ("telehealth-kiosk.service", "/etc/systemd/system/telehealth-kiosk.service"),
    (
        "telehealth-kiosk-safe-mode.service",
        "/etc/systemd/system/telehealth-kiosk-safe-mode.service",
    ),
    ("journald-telehealth.conf", "/etc/systemd/journald.conf.d/telehealth.conf"),
    ("coredump-telehealth.conf", "/etc/systemd/coredump.conf.d/telehealth.conf"),
    ("pam-telehealth-kiosk", "/etc/pam.d/telehealth-kiosk"),
    (
        "pipewire-telehealth-echo-cancel.conf",
        "/etc/pipewire/pipewire.conf.d/telehealth-echo-cancel.conf",
    ),
    ("swap-off-telehealth.conf", "/etc/dphys-swapfile"),
    ("99-telehealth-kiosk-bundle.rules", "/etc/udev/rules.d/99-telehealth-kiosk-bundle.rules"),
    (
        "telehealth-kiosk-bundle-stage@.service",
        "/etc/systemd/system/telehealth-kiosk-bundle-stage@.service",
    ),
    (
        "telehealth-kiosk-bundle-apply.service",
        "/etc/systemd/system/telehealth-kiosk-bundle-apply.service",
    ),
    (
        "telehealth-kiosk-bundle-apply.path",
        "/etc/systemd/system/telehealth-kiosk-bundle-apply.path",
    ),
    ("tmpfiles-telehealth-kiosk-bundle.conf", "/etc/tmpfiles.d/telehealth-kiosk-bundle.conf"),
    (
        "telehealth-kiosk-update.service",
        "/etc/systemd/system/telehealth-kiosk-update.service",
    ),
    ("telehealth-kiosk-update.timer", "/etc/systemd/system/telehealth-kiosk-update.timer"),
)
"""Each file of ``systemd/`` and where it goes (see systemd/README.md)."""
MASKED = ("getty@tty1.service", "dphys-swapfile.service")
"""No login prompt on the booth's screen; no swap file on the SD card."""
ENABLED = (
    ("multi-user.target.wants", "telehealth-kiosk.service"),
    ("paths.target.wants", "telehealth-kiosk-bundle-apply.path"),
    ("timers.target.wants", "telehealth-kiosk-update.timer"),
)
JOURNALD_CONF = "/etc/systemd/journald.conf.d/telehealth.conf"
UDEV_RULES = "/etc/udev/rules.d/99-telehealth-kiosk-bundle.rules"
BUNDLE_TMPFILES = "/etc/tmpfiles.d/telehealth-kiosk-bundle.conf"


class InstallError(KioskError):
    """The install cannot go on; the message names the step or argument and the fix."""


# ---------------------------------------------------------------- the plan


@dataclass
class Step:
    """One change the install still has to make."""

    name: str
    change: str
    apply: Callable[[], None]
    fix: str
    slow: bool = False
    touches_units: bool = False


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    left_for_booth: list[str] = field(default_factory=list)
    """What ``--root`` does not do: it needs a running booth (apt, users, systemctl)."""

    def add(self, step: Step) -> None:
        self.steps.append(step)


@dataclass(frozen=True)
class Options:
    root: Path
    wheels: tuple[Path, ...] = ()
    source: Path | None = None
    python: Path = DEFAULT_PYTHON
    units: Path = field(default_factory=default_units)
    no_deps: bool = False
    offline: bool = False
    dry_run: bool = False
    provisioning_keys: tuple[Path, ...] = ()
    """Public keys USB provisioning bundles must be signed with (``bundle keygen``'s .pub)."""
    trust: Path | None = None
    """A release bundle's ``trust/`` folder (the update repository's root and address)."""

    @property
    def on_booth(self) -> bool:
        """True when installing into the running system, not a folder."""
        return self.root == Path("/")


@dataclass(frozen=True)
class Release:
    """What is being installed: its version and, for a wheel, the wheel's hash."""

    version: str
    wheel: Path | None
    sha256: str | None


# ---------------------------------------------------------------- small tools


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _say(line: str) -> None:
    print(line, flush=True)


def _run(argv: Sequence[str], *, what: str, show_output: bool = False) -> None:
    """Run a command; on failure raise with the last lines it printed."""
    try:
        done = subprocess.run(
            list(argv),
            stdout=None if show_output else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise InstallError(f"{what}: {argv[0]} not found") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-5:])
        raise InstallError(f"{what}: `{' '.join(argv)}` exited with {done.returncode}: {tail}")


def _atomic_write(dest: Path, data: bytes, mode: int) -> None:
    """Write beside ``dest`` and rename over it: a reader sees the old or the new file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_symlink(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.parent / f".{link.name}.{os.getpid()}.new"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def switch_current(
    layout: Layout, version: str, *, between: Callable[[], None] | None = None
) -> None:
    """Point ``current`` at ``releases/<version>`` by renaming a new link over the old.

    ``rename(2)`` replaces the link in one step, so a unit starting at any
    moment finds either the old release or the new one, never nothing (an
    unlink followed by a symlink leaves a moment with no ``current``).
    ``between`` is called once the new link exists and before the rename, so
    a test can look at ``current`` in the middle of the switch.
    """
    current = layout.current
    if current.exists() and not current.is_symlink():
        raise InstallError(_not_a_link(current))
    tmp = current.parent / f".{current.name}.{os.getpid()}.new"
    tmp.unlink(missing_ok=True)
    os.symlink(str(Path("releases") / version), tmp)
    if between is not None:
        between()
    os.replace(tmp, current)


def _not_a_link(current: Path) -> str:
    kind = "a folder" if current.is_dir() else "a file"
    return (
        f"{current} is {kind}, not a link to a release; move it out of the way "
        f"(e.g. `mv {current} {current}.old`) and run install again"
    )


# ---------------------------------------------------------------- what to install


def _release_from_wheels(wheels: Sequence[Path]) -> Release:
    for wheel in wheels:
        if not wheel.is_file():
            raise InstallError(
                f"--wheel {wheel}: no such file; give the path of the booth's wheel "
                f"({PROJECT_WHEEL}-VERSION-py3-none-any.whl)"
            )
        if wheel.suffix != ".whl":
            raise InstallError(f"--wheel {wheel}: not a wheel (a .whl file)")
    ours = [w for w in wheels if w.name.split("-")[0].lower() == PROJECT_WHEEL]
    if len(ours) != 1:
        names = ", ".join(w.name for w in wheels)
        raise InstallError(
            f"--wheel: exactly one must be the booth's own wheel "
            f"({PROJECT_WHEEL}-VERSION-...whl), found {len(ours)} among: {names}"
        )
    [wheel] = ours
    parts = wheel.name.split("-")
    version = parts[1] if len(parts) >= 5 else ""
    if not _VERSION.fullmatch(version):
        raise InstallError(
            f"--wheel {wheel}: cannot read a version from the name; a wheel is named "
            f"{PROJECT_WHEEL}-VERSION-py3-none-any.whl"
        )
    return Release(version, wheel, _sha256(wheel))


def _release_from_source(source: Path) -> Release:
    pyproject = source / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        name, version = str(project["name"]), str(project["version"])
    except FileNotFoundError:
        raise InstallError(
            f"--source {source}: no pyproject.toml there; give the top folder of "
            "a telehealth-kiosk checkout"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise InstallError(
            f"--source {pyproject}: not a readable project file ({exc}); give the top "
            "folder of a telehealth-kiosk checkout"
        ) from None
    if name.replace("-", "_").lower() != PROJECT_WHEEL or not _VERSION.fullmatch(version):
        raise InstallError(
            f"--source {pyproject}: project {name!r} version {version!r} is not the booth's; "
            "give the top folder of a telehealth-kiosk checkout"
        )
    return Release(version, None, None)


def _marker(release_dir: Path) -> dict[str, str] | None:
    try:
        data = json.loads((release_dir / RELEASE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------- planning


def _check_root(opts: Options) -> None:
    root = opts.root
    if not root.is_absolute():
        raise InstallError(f"--root {root}: must be an absolute path")
    if not root.exists():
        raise InstallError(f"--root {root}: no such folder; create it first (mkdir -p {root})")
    if not root.is_dir():
        raise InstallError(f"--root {root}: is a file, not a folder; give a folder")
    if opts.on_booth and os.geteuid() != 0 and not opts.dry_run:
        raise InstallError(
            "installing onto this system needs root: run `sudo kiosk-provision install ...`, "
            "or try it into a folder with --root DIR (or look first with --dry-run)"
        )
    probe = Layout(root).app
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise InstallError(
            f"--root {root}: {probe} is a file where a folder is needed; remove or move it"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InstallError(
            f"--root {root}: cannot write to {probe} (permission denied); choose a folder "
            "you can write to, or run as root"
        )


def _plan_apt(opts: Options, plan: Plan) -> None:
    wanted = list(APT_ALWAYS)
    if Path("/etc/apt/sources.list.d/raspi.list").exists() or Path("/etc/rpi-issue").exists():
        wanted += APT_PI_ONLY
    if not opts.on_booth:
        every = dict.fromkeys([*wanted, *APT_PI_ONLY])
        plan.left_for_booth.append(f"apt packages: {' '.join(every)} (the last two on a Pi)")
        return
    missing = [p for p in dict.fromkeys(wanted) if not _dpkg_installed(p)]
    if not missing:
        return
    argv = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    plan.add(
        Step(
            "apt packages",
            f"install {' '.join(missing)}",
            lambda: _run(argv, what="apt-get", show_output=True),
            "check the network and run `sudo apt-get update`, then install again",
            slow=True,
        )
    )


def _dpkg_installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and done.stdout.strip().endswith(" installed")


def _plan_user(opts: Options, plan: Plan) -> None:
    if not opts.on_booth:
        plan.left_for_booth.append(
            f"user {USER}: system account, home {USER_HOME}, no login shell, "
            f"groups {' '.join(USER_GROUPS)} (those that exist)"
        )
        return
    try:
        pwd.getpwnam(USER)
        exists = True
    except KeyError:
        exists = False
    if not exists:
        plan.add(
            Step(
                f"user {USER}",
                f"create the system account {USER} (no password, no login shell)",
                lambda: _run(
                    [
                        "useradd",
                        "--system",
                        "--user-group",
                        "--create-home",
                        "--home-dir",
                        str(USER_HOME),
                        "--shell",
                        "/usr/sbin/nologin",
                        USER,
                    ],
                    what=f"creating user {USER}",
                ),
                f"check /etc/passwd for a broken {USER} entry, or create the user by hand "
                f"(useradd --system --user-group {USER})",
            )
        )
    members = set() if not exists else _groups_of(USER)
    missing = []
    for name in USER_GROUPS:
        try:
            grp.getgrnam(name)
        except KeyError:
            continue
        if name not in members:
            missing.append(name)
    if missing:
        plan.add(
            Step(
                f"user {USER} groups",
                f"add {USER} to {' '.join(missing)}",
                lambda: _run(
                    ["usermod", "--append", "--groups", ",".join(missing), USER],
                    what=f"adding {USER} to groups",
                ),
                f"add the groups by hand: usermod -aG {','.join(missing)} {USER}",
            )
        )


def _groups_of(user: str) -> set[str]:
    primary = pwd.getpwnam(user).pw_gid
    return {g.gr_name for g in grp.getgrall() if user in g.gr_mem or g.gr_gid == primary}


def _plan_dirs(opts: Options, layout: Layout, plan: Plan) -> None:
    for path, mode in ((layout.app, 0o755), (layout.releases, 0o755), (layout.config_dir, 0o750)):
        _plan_dir(path, mode, plan)
    if opts.on_booth:
        try:
            kiosk_gid = grp.getgrnam(USER).gr_gid
        except KeyError:
            kiosk_gid = None  # created by the user step; checked again on the next run
        config = layout.config_dir
        if kiosk_gid is None or not config.exists() or config.stat().st_gid != kiosk_gid:
            plan.add(
                Step(
                    f"{config} group",
                    f"let group {USER} read {config}",
                    lambda: shutil.chown(config, "root", USER),
                    f"run `chown root:{USER} {config}`",
                )
            )
    else:
        plan.left_for_booth.append(f"ownership: {layout.config_dir} group {USER}")


def _plan_dir(path: Path, mode: int, plan: Plan) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise InstallError(f"{path} is not a folder; move it out of the way and run install again")
    if not path.exists():

        def make() -> None:
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(mode)

        plan.add(Step(str(path), f"create folder (mode {mode:o})", make, _fix_write(path)))
    elif path.stat().st_mode & 0o7777 != mode:
        plan.add(
            Step(
                str(path),
                f"set mode {mode:o}",
                lambda: path.chmod(mode),
                _fix_write(path),
            )
        )


def _fix_write(path: Path) -> str:
    return f"make sure {path.parent} is writable (run as root, or give --root a writable folder)"


def _plan_release(opts: Options, layout: Layout, release: Release, plan: Plan) -> None:
    folder = layout.release(release.version)
    marker = _marker(folder)
    if marker is not None:
        if release.sha256 is not None and marker.get("wheel_sha256") not in (None, release.sha256):
            raise InstallError(
                f"{folder} already holds release {release.version} built from a different "
                "wheel, and an installed release is never changed; give the new build its "
                "own version, or remove that folder if `current` does not point at it"
            )
        return
    if not opts.python.is_file():
        raise InstallError(
            f"--python {opts.python}: no such interpreter; on a booth install python3 "
            "(apt-get install python3-venv), or name another with --python"
        )
    leftover = folder.exists() or folder.is_symlink()
    what = "redo an unfinished release" if leftover else "create"
    plan.add(
        Step(
            f"release {release.version}",
            f"{what} {folder}: a virtual environment (--system-site-packages) with the booth",
            lambda: _install_release(opts, folder, release),
            "see the message above; a half-made release folder is redone on the next run",
            slow=True,
        )
    )


def _install_release(opts: Options, folder: Path, release: Release) -> None:
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    _say(f"    making the virtual environment with {opts.python} (takes a few seconds)...")
    # A release is never changed once made, so it carries no pip of its own when
    # this tool's pip can install into it (``pip --python``); else it gets one.
    own_pip = importlib.util.find_spec("pip") is None
    venv = [str(opts.python), "-m", "venv", "--system-site-packages", str(folder)]
    _run(venv if own_pip else [*venv, "--without-pip"], what="creating the virtual environment")
    python = folder / "bin" / "python"
    pip = (
        [str(python), "-m", "pip"]
        if own_pip
        else [sys.executable, "-m", "pip", "--python", str(python)]
    )
    pip += ["--disable-pip-version-check", "--no-input"]
    with tempfile.TemporaryDirectory(prefix="kiosk-wheel-") as built:
        if release.wheel is None:
            assert opts.source is not None
            _say(f"    building the booth's wheel from {opts.source} (pip wheel)...")
            _run(
                [*pip, "wheel", "--no-deps", "--wheel-dir", built, str(opts.source)],
                what=f"building a wheel from --source {opts.source}",
                show_output=True,
            )
            wheels = sorted(Path(built).glob("*.whl"))
        else:
            wheels = list(opts.wheels)
        install = [*pip, "install"]
        if opts.no_deps:
            install.append("--no-deps")
        if opts.offline:
            install.append("--no-index")
        for link in dict.fromkeys(str(w.parent.resolve()) for w in wheels):
            install += ["--find-links", link]
        _say(f"    installing {len(wheels)} wheel(s) with pip...")
        _run([*install, *map(str, wheels)], what="pip install", show_output=True)
    script = folder / "bin" / "telehealth-kiosk"
    if not script.is_file():
        raise InstallError(f"pip finished but {script} is missing: the wheel is not the booth's")
    marker = {
        "version": release.version,
        "wheel_sha256": release.sha256 or "",
        "python": str(opts.python),
    }
    if release.sha256 is None:
        del marker["wheel_sha256"]
    if opts.trust is not None:
        # What the updater trusts from this release on: read-only, like the release.
        from provisioning.update.bundle import TRUST_DIR

        trust = folder / TRUST_DIR
        trust.mkdir(parents=True, exist_ok=True)
        for item in sorted(opts.trust.iterdir()):
            _atomic_write(trust / item.name, item.read_bytes(), 0o444)
    _atomic_write(folder / RELEASE_MARKER, (json.dumps(marker, indent=1) + "\n").encode(), 0o644)


def _plan_current(layout: Layout, release: Release, plan: Plan) -> None:
    current = layout.current
    target = str(Path("releases") / release.version)
    if current.is_symlink():
        if os.readlink(current) == target:
            return
        change = f"switch from {os.readlink(current)} to {target} (atomic rename)"
    elif current.exists():
        raise InstallError(_not_a_link(current))
    else:
        change = f"link to {target}"
    plan.add(
        Step(
            str(current),
            change,
            lambda: switch_current(layout, release.version),
            f"make sure {current.parent} is writable and `current` is a link or absent",
        )
    )


def _plan_files(opts: Options, layout: Layout, plan: Plan) -> None:
    for name, dest in UNIT_FILES:
        source = opts.units / name
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise InstallError(
                f"--units {opts.units}: cannot read {name} ({exc.strerror}); give the "
                "systemd/ folder of the booth's source"
            ) from None
        target = layout.root / dest.lstrip("/")
        if target.is_symlink() or (target.exists() and not target.is_file()):
            current_state = "a link or folder"
        elif not target.exists():
            current_state = None
        elif target.read_bytes() != data:
            current_state = "different"
        elif target.stat().st_mode & 0o7777 != 0o644:
            current_state = "wrong mode"
        else:
            continue
        change = "install" if current_state is None else f"replace ({current_state})"

        def put(target: Path = target, data: bytes = data) -> None:
            if target.is_dir() and not target.is_symlink():
                raise InstallError(f"{target} is a folder; move it out of the way")
            _atomic_write(target, data, 0o644)

        plan.add(
            Step(
                str(target),
                f"{change} from systemd/{name}",
                put,
                _fix_write(target),
                touches_units=dest.startswith("/etc/systemd/"),
            )
        )
    for unit in MASKED:
        _plan_link(layout.units / unit, "/dev/null", f"mask {unit}", plan)
    for wants, unit in ENABLED:
        link = layout.units / wants / unit
        _plan_link(link, f"/etc/systemd/system/{unit}", f"enable {unit}", plan)


def _plan_link(link: Path, target: str, change: str, plan: Plan) -> None:
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.is_dir() and not link.is_symlink():
        raise InstallError(f"{link} is a folder; move it out of the way and run install again")
    plan.add(
        Step(
            str(link),
            f"{change} (link to {target})",
            lambda: _atomic_symlink(target, link),
            _fix_write(link),
            touches_units=True,
        )
    )


def _plan_provisioning_keys(opts: Options, layout: Layout, plan: Plan) -> None:
    """Each ``--provisioning-key`` as ``provisioning-keys/<key id>.pub`` (0644)."""
    from provisioning.bundle import BundleError, key_id, load_public_key

    for source in opts.provisioning_keys:
        try:
            key = load_public_key(source)
        except BundleError as exc:
            raise InstallError(f"--provisioning-key: {exc}") from None
        data = source.read_bytes()
        target = layout.provisioning_keys / f"{key_id(key)}.pub"
        if target.is_file() and not target.is_symlink() and target.read_bytes() == data:
            continue

        def put(target: Path = target, data: bytes = data) -> None:
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            _atomic_write(target, data, 0o644)

        plan.add(
            Step(
                str(target),
                f"trust provisioning key {key_id(key)} for USB bundles (from {source})",
                put,
                _fix_write(target),
            )
        )


def _plan_system(opts: Options, plan: Plan) -> None:
    """What only a running booth needs after the files changed: systemd and swap."""
    if not opts.on_booth:
        plan.left_for_booth.append(
            "systemctl daemon-reload; systemctl restart systemd-journald; swapoff of any "
            "swap on the SD card"
        )
        plan.left_for_booth.append(
            f"udevadm control --reload; systemd-tmpfiles --create {BUNDLE_TMPFILES}"
        )
        return
    if any(s.name.endswith(UDEV_RULES) for s in plan.steps):
        plan.add(
            Step(
                "udev",
                "reload udev rules (USB provisioning sticks)",
                lambda: _run(["udevadm", "control", "--reload"], what="udevadm control --reload"),
                "reboot the booth instead; the rules load at boot",
            )
        )
    if any(s.name.endswith(BUNDLE_TMPFILES) for s in plan.steps):
        plan.add(
            Step(
                "tmpfiles",
                "make /run/telehealth-kiosk-bundle (USB provisioning bundles)",
                lambda: _run(
                    ["systemd-tmpfiles", "--create", BUNDLE_TMPFILES], what="systemd-tmpfiles"
                ),
                "reboot the booth instead; the folder is made at boot",
            )
        )
    if any(s.touches_units for s in plan.steps):
        plan.add(
            Step(
                "systemd",
                "reload unit files (systemctl daemon-reload)",
                lambda: _run(["systemctl", "daemon-reload"], what="systemctl daemon-reload"),
                "check `systemctl status` and `journalctl -b`; then run install again",
            )
        )
    if any(s.name.endswith(JOURNALD_CONF) for s in plan.steps):
        plan.add(
            Step(
                "journald",
                "restart systemd-journald so the journal moves to RAM",
                lambda: _run(
                    ["systemctl", "restart", "systemd-journald"], what="restarting journald"
                ),
                "reboot the booth instead; the setting applies at boot",
            )
        )
    active = _active_swap()
    if active:
        plan.add(
            Step(
                "swap",
                f"turn off swap on {' '.join(active)}",
                lambda: _run(["swapoff", *active], what="swapoff"),
                "reboot the booth instead: with dphys-swapfile masked no swap comes back",
            )
        )
    swapfile = Path("/var/swap")
    if swapfile.exists() and not active:
        plan.add(
            Step(
                "swap file",
                f"delete {swapfile} (it may hold memory of past visits)",
                swapfile.unlink,
                f"run `swapoff {swapfile}` and delete it by hand",
            )
        )


def _active_swap() -> list[str]:
    """Active swap that is not in RAM (zram is fine: it never reaches the card)."""
    try:
        lines = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        return []
    return [ln.split()[0] for ln in lines if ln.split() and "zram" not in ln.split()[0]]


def make_plan(opts: Options) -> tuple[Plan, Release]:
    """Every change still needed, in order; raises :class:`InstallError` on bad input."""
    _check_root(opts)
    if opts.source is not None:
        release = _release_from_source(opts.source)
    elif opts.wheels:
        release = _release_from_wheels(opts.wheels)
    else:
        raise InstallError("nothing to install: give the booth's wheel (--wheel) or --source DIR")
    layout = Layout(opts.root)
    plan = Plan()
    _plan_apt(opts, plan)
    _plan_user(opts, plan)
    _plan_dirs(opts, layout, plan)
    _plan_release(opts, layout, release, plan)
    _plan_current(layout, release, plan)
    _plan_files(opts, layout, plan)
    _plan_provisioning_keys(opts, layout, plan)
    _plan_system(opts, plan)
    return plan, release


def install(opts: Options) -> int:
    """Make or show the plan; returns the number of changes (made or, with dry run, due)."""
    plan, release = make_plan(opts)
    where = "this system" if opts.on_booth else str(opts.root)
    if not plan.steps:
        _say(f"Nothing to change: release {release.version} is installed and current in {where}.")
    elif opts.dry_run:
        _say(f"Would make {len(plan.steps)} change(s) in {where} (dry run: nothing changed):")
        for step in plan.steps:
            _say(f"  - {step.name}: {step.change}")
    else:
        total = len(plan.steps)
        for n, step in enumerate(plan.steps, 1):
            _say(f"[{n}/{total}] {step.name}: {step.change}")
            try:
                step.apply()
            except InstallError as exc:
                raise InstallError(f"step '{step.name}' failed: {exc}; {step.fix}") from None
            except (OSError, subprocess.SubprocessError) as exc:
                raise InstallError(f"step '{step.name}' failed: {exc}; {step.fix}") from None
        _say(f"Done: {total} change(s); release {release.version} is current in {where}.")
    if plan.left_for_booth:
        _say("Left for the booth (not done under --root):")
        for item in plan.left_for_booth:
            _say(f"  - {item}")
    if plan.steps and not opts.dry_run and opts.on_booth:
        _say("Next: kiosk-provision init, then enroll, network and selftest.")
    return len(plan.steps)


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="install into this folder instead of the running system (tests, images)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change and change nothing"
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--wheel",
        dest="wheels",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="the booth's wheel, plus any dependency wheels (repeat the option)",
    )
    what.add_argument(
        "--source", type=Path, metavar="DIR", help="build the booth's wheel from this checkout"
    )
    what.add_argument(
        "--bundle",
        type=Path,
        metavar="FILE.tar",
        help="a release bundle (`kiosk-provision release bundle`): all its wheels, offline, "
        "and the update repository it trusts",
    )
    parser.add_argument(
        "--python",
        type=Path,
        default=DEFAULT_PYTHON,
        metavar="PATH",
        help=f"the Python the release's environment is made from (default {DEFAULT_PYTHON})",
    )
    parser.add_argument(
        "--units",
        type=Path,
        default=None,
        metavar="DIR",
        help="the systemd/ folder to install from (default: this tool's own copy)",
    )
    parser.add_argument(
        "--no-deps",
        action="store_true",
        help="install only the given wheels; the dependencies are already there",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="never use a package index: every wheel needed is given with --wheel",
    )
    parser.add_argument(
        "--provisioning-key",
        dest="provisioning_keys",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="trust this public key (bundle keygen's .pub) for USB provisioning bundles; "
        "may be repeated",
    )


def run(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        return _run_bundle(args)
    return _run_install(args)


def _run_bundle(args: argparse.Namespace) -> int:
    """Install from a release bundle: checked like the updater checks one, then its wheels."""
    from provisioning.update import UpdateError
    from provisioning.update.bundle import extract_bundle

    with tempfile.TemporaryDirectory(prefix="kiosk-bundle-") as tmp:
        try:
            extract_bundle(Path(os.path.abspath(args.bundle)), Path(tmp))
        except UpdateError as exc:
            raise InstallError(f"--bundle {args.bundle}: {exc}") from None
        args.wheels = sorted(str(w) for w in Path(tmp, "wheels").glob("*.whl"))
        args.offline = True
        return _run_install(args, trust=Path(tmp) / "trust")


def _run_install(args: argparse.Namespace, trust: Path | None = None) -> int:
    opts = Options(
        trust=trust,
        root=Path(os.path.abspath(args.root)),
        wheels=tuple(Path(os.path.abspath(w)) for w in args.wheels),
        source=None if args.source is None else Path(os.path.abspath(args.source)),
        python=Path(os.path.abspath(args.python)),
        units=Path(os.path.abspath(args.units)) if args.units else default_units(),
        no_deps=args.no_deps,
        offline=args.offline,
        dry_run=args.dry_run,
        provisioning_keys=tuple(Path(os.path.abspath(k)) for k in args.provisioning_keys),
    )
    install(opts)
    sys.stdout.flush()
    return EXIT_OK
