"""``kiosk-provision install --root``: the tree it lays out, a second run that
changes nothing, a dry run that changes nothing, errors that name the fix, and
``current`` switched by one rename (the twin: unlink then link leaves a moment
with no ``current``).

The booth's wheel is built once per session (PEP 517, ``--no-deps``) and the
release is installed with ``--no-deps --offline`` from the venv's own Python:
the install is real (venv, pip, console script) without downloading anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning import install as installer
from provisioning.cli import main
from provisioning.layout import EC_SINK, EC_SOURCE, RELEASE_MARKER, Layout

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
PYTHON = Path(sys.executable)  # the test venv's Python; the release venv is made from it


def install_args(root: Path, wheel: Path, *extra: str) -> list[str]:
    return [
        "install", "--root", str(root), "--wheel", str(wheel), "--python", str(PYTHON),
        "--no-deps", "--offline", *extra,
    ]  # fmt: skip


def run(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path below ``root``: (kind, mode, link target or content hash)."""
    out: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[str(path.relative_to(root))] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[str(path.relative_to(root))] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path.relative_to(root))] = ("file", stat.S_IMODE(st.st_mode), digest)
    return out


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real install into a fresh root, made once for this module."""
    root = tmp_path_factory.mktemp("root")
    assert main(install_args(root, wheel)) == 0
    return root


@pytest.fixture
def copy_of_installed(installed: Path, tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    yield root


# ---------------------------------------------------------------- the tree


def test_install_lays_out_the_booth(installed: Path, wheel: Path) -> None:
    layout = Layout(installed)
    version = wheel.name.split("-")[1]
    release = layout.release(version)
    assert os.readlink(layout.current) == f"releases/{version}"
    assert layout.current.resolve() == release.resolve()
    # A real venv that sees the system's packages (picamera2, libcamera, lgpio on a Pi).
    assert "include-system-site-packages = true" in (release / "pyvenv.cfg").read_text()
    assert (release / "bin" / "telehealth-kiosk").is_file()
    marker = json.loads((release / RELEASE_MARKER).read_text())
    assert marker["version"] == version
    assert marker["wheel_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    done = subprocess.run(
        [str(layout.current / "bin" / "python"), "-c", "import kiosk; print(kiosk.__version__)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == version
    assert stat.S_IMODE(layout.config_dir.stat().st_mode) == 0o750

    for name, dest in installer.UNIT_FILES:
        target = installed / dest.lstrip("/")
        assert target.read_bytes() == (UNITS / name).read_bytes(), dest
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    units = layout.units
    assert os.readlink(units / "getty@tty1.service") == "/dev/null"
    assert os.readlink(units / "dphys-swapfile.service") == "/dev/null"
    assert (
        os.readlink(units / "multi-user.target.wants" / "telehealth-kiosk.service")
        == "/etc/systemd/system/telehealth-kiosk.service"
    )
    assert (
        os.readlink(units / "paths.target.wants" / "telehealth-kiosk-bundle-apply.path")
        == "/etc/systemd/system/telehealth-kiosk-bundle-apply.path"
    )
    assert (installed / "etc/udev/rules.d/99-telehealth-kiosk-bundle.rules").is_file()
    assert (installed / "etc/tmpfiles.d/telehealth-kiosk-bundle.conf").is_file()


def test_every_file_in_systemd_is_installed() -> None:
    shipped = {p.name for p in UNITS.iterdir() if p.name != "README.md"}
    assert shipped == {name for name, _ in installer.UNIT_FILES}


def test_echo_cancel_nodes_are_the_ones_the_booth_uses() -> None:
    conf = (UNITS / "pipewire-telehealth-echo-cancel.conf").read_text()
    assert "libpipewire-module-echo-cancel" in conf
    assert f'node.name = "{EC_SOURCE}"' in conf
    assert f'node.name = "{EC_SINK}"' in conf


# ---------------------------------------------------------------- provisioning keys


def test_a_provisioning_key_is_installed_once(
    copy_of_installed: Path, wheel: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """What the stage unit trusts: the fleet's .pub as provisioning-keys/<key id>.pub."""
    from provisioning.bundle import keygen, trusted_keys

    _, public, kid = keygen(tmp_path / "fleet")
    args = install_args(copy_of_installed, wheel, "--provisioning-key", str(public))
    code, out, _ = run(capfd, *args)
    assert code == 0 and f"trust provisioning key {kid}" in out
    layout = Layout(copy_of_installed)
    installed_key = layout.provisioning_keys / f"{kid}.pub"
    assert installed_key.read_bytes() == public.read_bytes()
    assert stat.S_IMODE(installed_key.stat().st_mode) == 0o644
    assert len(trusted_keys(layout)) == 1
    code, out, _ = run(capfd, *args)
    assert code == 0 and "Nothing to change" in out


def test_a_bad_provisioning_key_names_the_option_and_file(
    tmp_path: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "fleet.pub"
    bad.write_text("not a key")
    root = tmp_path / "root"
    root.mkdir()
    code, _, err = run(capfd, *install_args(root, wheel, "--provisioning-key", str(bad)))
    assert code == 1
    assert f"--provisioning-key: {bad}: not a PEM public key" in err
    assert list(root.iterdir()) == []


# ---------------------------------------------------------------- idempotent, dry run


def test_second_run_changes_nothing_and_says_so(
    copy_of_installed: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(copy_of_installed)
    code, out, _ = run(capfd, *install_args(copy_of_installed, wheel))
    assert code == 0
    assert "Nothing to change" in out
    assert snapshot(copy_of_installed) == before


def test_twin_a_changed_unit_is_put_back(
    copy_of_installed: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The snapshot comparison sees changes: a tampered unit is found and repaired."""
    before = snapshot(copy_of_installed)
    unit = copy_of_installed / "etc/systemd/system/telehealth-kiosk.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=20", "WatchdogSec=0"))
    assert snapshot(copy_of_installed) != before
    code, out, _ = run(capfd, *install_args(copy_of_installed, wheel))
    assert code == 0
    assert "Done: 1 change(s)" in out and "telehealth-kiosk.service: replace" in out
    assert snapshot(copy_of_installed) == before


def test_dry_run_changes_nothing(
    tmp_path: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capfd, *install_args(tmp_path, wheel, "--dry-run"))
    assert code == 0
    assert "dry run: nothing changed" in out
    assert "release 0.1.0: create" in out and "mask getty@tty1.service" in out
    assert list(tmp_path.iterdir()) == []


def test_dry_run_on_an_installed_tree_shows_only_what_differs(
    copy_of_installed: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (copy_of_installed / "etc/systemd/system/getty@tty1.service").unlink()
    before = snapshot(copy_of_installed)
    code, out, _ = run(capfd, *install_args(copy_of_installed, wheel, "--dry-run"))
    assert code == 0
    assert "Would make 1 change(s)" in out and "mask getty@tty1.service" in out
    assert snapshot(copy_of_installed) == before


def test_an_unfinished_release_is_redone(
    copy_of_installed: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    release = Layout(copy_of_installed).release("0.1.0")
    (release / RELEASE_MARKER).unlink()  # as if the power went off during pip
    code, out, _ = run(capfd, *install_args(copy_of_installed, wheel, "--dry-run"))
    assert "redo an unfinished release" in out


# ---------------------------------------------------------------- bad input


def test_missing_wheel_names_the_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "telehealth_kiosk-9.9-py3-none-any.whl"
    code, _, err = run(capfd, *install_args(tmp_path, missing))
    assert code == 1
    assert f"--wheel {missing}: no such file" in err
    assert "give the path of the booth's wheel" in err


def test_a_wheel_that_is_not_the_booths(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "requests-2.0-py3-none-any.whl"
    other.write_bytes(b"PK")
    code, _, err = run(capfd, *install_args(tmp_path, other))
    assert code == 1
    assert "exactly one must be the booth's own wheel" in err and other.name in err


def test_nothing_to_install(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capfd, "install", "--root", str(tmp_path))
    assert code == 1
    assert "give the booth's wheel (--wheel) or --source DIR" in err


@pytest.mark.parametrize("blocker", ["root is a file", "opt is a file"])
def test_unwritable_root_names_the_path(
    tmp_path: Path, wheel: Path, blocker: str, capfd: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    if blocker == "root is a file":
        root.write_text("")
        expected = f"--root {root}: is a file, not a folder"
    else:
        root.mkdir()
        (root / "opt").write_text("")
        expected = f"{root / 'opt'} is a file where a folder is needed; remove or move it"
    code, _, err = run(capfd, *install_args(root, wheel))
    assert code == 1
    assert expected in err


def test_a_step_that_fails_is_named_with_its_fix(
    tmp_path: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A release whose Python cannot make a venv: the step and the fix are named."""
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 'No module named venv' >&2\nexit 1\n")
    fake.chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    argv = install_args(root, wheel)
    argv[argv.index("--python") + 1] = str(fake)
    code, _, err = run(capfd, *argv)
    assert code == 1
    assert "step 'release 0.1.0' failed: creating the virtual environment" in err
    assert "No module named venv" in err
    assert not Layout(root).current.is_symlink()  # never pointed at a half-made release


def test_current_that_is_not_a_link(
    copy_of_installed: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    current = Layout(copy_of_installed).current
    current.unlink()
    current.mkdir()
    code, _, err = run(capfd, *install_args(copy_of_installed, wheel))
    assert code == 1
    assert f"{current} is a folder, not a link to a release" in err
    assert f"mv {current} {current}.old" in err


def test_same_version_from_a_different_wheel_is_refused(
    copy_of_installed: Path, wheel: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other" / wheel.name
    other.parent.mkdir()
    other.write_bytes(wheel.read_bytes() + b"\0")  # same name, different build
    code, _, err = run(capfd, *install_args(copy_of_installed, other))
    assert code == 1
    assert "built from a different wheel" in err and "own version" in err


def test_bad_source_folder(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capfd, "install", "--root", str(tmp_path), "--source", str(tmp_path))
    assert code == 1
    assert f"--source {tmp_path}: no pyproject.toml there" in err


# ---------------------------------------------------------------- the switch of `current`


def _second_release(root: Path) -> Layout:
    layout = Layout(root)
    shutil.copytree(layout.release("0.1.0"), layout.release("0.2.0"), symlinks=True)
    return layout


def test_current_is_switched_by_one_rename(copy_of_installed: Path) -> None:
    layout = _second_release(copy_of_installed)
    seen: list[bool] = []
    installer.switch_current(layout, "0.2.0", between=lambda: seen.append(_resolves(layout)))
    assert seen == [True]  # mid-switch, current still names a whole release
    assert os.readlink(layout.current) == "releases/0.2.0"


def _resolves(layout: Layout) -> bool:
    return (layout.current / "bin" / "telehealth-kiosk").is_file()


def _unlink_then_link(layout: Layout, version: str, between: object) -> None:
    """What not to do: remove the link, then make the new one."""
    layout.current.unlink()
    assert callable(between)
    between()
    os.symlink(f"releases/{version}", layout.current)


def test_twin_unlink_then_link_leaves_no_current(copy_of_installed: Path) -> None:
    layout = _second_release(copy_of_installed)
    seen: list[bool] = []
    _unlink_then_link(layout, "0.2.0", lambda: seen.append(_resolves(layout)))
    assert seen == [False]  # a unit starting now would find no booth at all
    assert os.readlink(layout.current) == "releases/0.2.0"


def test_switch_through_the_cli_reports_the_change(
    copy_of_installed: Path, wheel: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    layout = _second_release(copy_of_installed)
    installer.switch_current(layout, "0.2.0")
    code, out, _ = run(capfd, *install_args(copy_of_installed, wheel))
    assert code == 0
    assert "switch from releases/0.2.0 to releases/0.1.0 (atomic rename)" in out
    assert os.readlink(layout.current) == "releases/0.1.0"
    assert not list(layout.app.glob(".current*"))  # no temporary link left behind


def test_help_lists_install(capfd: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capfd, "install", "--help")
    assert code == 0
    assert "--dry-run" in out and "--root DIR" in out and "--wheel PATH" in out


# ---------------------------------------------------------------- from a release bundle


def _release_bundle(wheel: Path, out: Path) -> Path:
    from kiosk import __version__
    from provisioning.update.bundle import make_bundle

    source = {"metadata_url": "https://updates.example.org/m/", "targets_url": "https://u/t/"}
    make_bundle([wheel], __version__, out, b'{"signed": "root"}\n', source)
    return out


def test_a_release_bundle_installs_with_the_update_trust_it_carries(
    wheel: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from kiosk import __version__
    from provisioning.update.bundle import ROOT_FILE, SOURCE_FILE, TRUST_DIR

    bundle = _release_bundle(wheel, tmp_path / "release.tar")
    root = tmp_path / "root"
    root.mkdir()
    code, out, err = run(
        capfd, "install", "--root", str(root), "--bundle", str(bundle),
        "--python", str(PYTHON), "--no-deps",
    )  # fmt: skip
    assert code == 0, err
    release = Layout(root).release(__version__)
    trust = release / TRUST_DIR
    assert (trust / ROOT_FILE).read_bytes() == b'{"signed": "root"}\n'
    assert json.loads((trust / SOURCE_FILE).read_text())["metadata_url"].startswith("https://")
    assert stat.S_IMODE((trust / ROOT_FILE).stat().st_mode) == 0o444
    assert os.readlink(Layout(root).current) == f"releases/{__version__}"


def test_a_tampered_release_bundle_is_refused_naming_the_option(
    wheel: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bundle = _release_bundle(wheel, tmp_path / "release.tar")
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a byte inside the wheel
    bundle.write_bytes(bytes(data))
    root = tmp_path / "root"
    code, out, err = run(
        capfd, "install", "--root", str(root), "--bundle", str(bundle),
        "--python", str(PYTHON), "--no-deps",
    )  # fmt: skip
    assert code == 1 and f"--bundle {bundle}" in err, err
    assert not (root / "opt").exists()


def test_an_installed_release_carries_the_units_to_install_from(
    installed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A booth installed from a wheel can install and repair itself with no source checkout."""
    from kiosk import __version__
    from provisioning import install as install_module

    shipped = Layout(installed).release(__version__) / "share" / "telehealth-kiosk" / "systemd"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in UNITS.iterdir())
    assert install_module.default_units() == install_module.REPO_UNITS  # in a checkout
    monkeypatch.setattr(install_module, "REPO_UNITS", Path("/nonexistent/systemd"))
    assert install_module.default_units() == install_module.INSTALLED_UNITS  # in a release
