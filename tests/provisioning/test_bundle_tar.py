"""``kiosk-provision bundle make --tar``: one .tar.gz a booth reads like a bundle folder
(verified and found on a stick), refused when it would overwrite or has a name a
stick is not searched for; tampering inside the tarball is still caught."""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from pathlib import Path

import pytest

from provisioning import bundle
from provisioning.bundle import BUNDLE_DIR, find_bundle, load_public_key, verify
from provisioning.cli import COMMANDS, main

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-booth.toml"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    private, public, _ = bundle.keygen(tmp_path_factory.mktemp("keys") / "fleet")
    return private, public


def make_tar(keys: tuple[Path, Path], out: Path, *extra: str) -> int:
    argv = ["bundle", "make", "--tar", "--key", str(keys[0]), "--config", str(DEMO)]
    return main([*argv, *extra, str(out)])


def test_a_tarball_on_a_stick_is_found_and_verifies(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    code_file = tmp_path / "code"
    code_file.write_text("7KQ4-M2XD-9HPT\n")
    assert make_tar(keys, stick, "--enrollment-code-file", str(code_file)) == 0
    written = stick / f"{BUNDLE_DIR}.tar.gz"
    assert f"Signed bundle written to {written}" in capsys.readouterr().out
    assert [p.name for p in stick.iterdir()] == [written.name]  # no temporary left
    with tarfile.open(written, "r:gz") as tar:
        names = sorted(tar.getnames())
    assert names == [BUNDLE_DIR] + [
        f"{BUNDLE_DIR}/{n}"
        for n in ("booth.toml", "enrollment-code", "manifest.json", "manifest.sig")
    ]
    found = find_bundle(stick)
    assert found is not None
    verified = verify(found, [load_public_key(keys[1])])
    assert verified.enrollment_code == "7KQ4-M2XD-9HPT"
    assert main(["bundle", "verify", "--trust", str(keys[1]), str(written)]) == 0
    assert "Bundle OK" in capsys.readouterr().out


def test_a_tampered_tarball_is_refused(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The twin of the above: the same tarball with one byte of the booth file changed."""
    good = tmp_path / "good.tar.gz"
    assert make_tar(keys, good) == 0
    out = io.BytesIO()
    with tarfile.open(good, "r:gz") as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if member.name.endswith("booth.toml"):
                data = data.replace(b"Demo", b"Demx", 1)
            dst.addfile(member, io.BytesIO(data) if member.isfile() else None)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(gzip.compress(out.getvalue()))
    capsys.readouterr()
    assert main(["bundle", "verify", "--trust", str(keys[1]), str(bad)]) == 1
    assert "booth.toml" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bundle.zip", "with --tar, give a new file name ending in .tar.gz"),
        ("taken.tar.gz", "exists already; give a new file name"),
    ],
)
def test_make_tar_refuses_a_bad_or_taken_name(
    tmp_path: Path,
    keys: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    name: str,
    message: str,
) -> None:
    (tmp_path / "taken.tar.gz").write_bytes(b"keep me")
    capsys.readouterr()
    assert make_tar(keys, tmp_path / name) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / name}: {message}" in err
    assert "Traceback" not in err
    assert (tmp_path / "taken.tar.gz").read_bytes() == b"keep me"


def test_the_bundle_help_line_lists_every_action() -> None:
    """Every action the bundle command takes is named in its line of ``--help``."""
    command = next(c for c in COMMANDS if c.name == "bundle")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"keygen", "make", "verify", "apply", "stage", "apply-staged"}
    listed = command.help.split(":", 1)[1]
    assert [word.strip() for word in listed.split(",")] == list(sub.choices)
