"""Crash-safe file operations: every change is write-to-temporary, fsync, rename, fsync the folder.

A booth can lose power at any instant. Whatever the updater changes goes
through these functions, so after a restart every file is either its old or
its new content (never empty, never half-written) and a leftover temporary
is recognisable by its name and removed by :func:`remove_leftovers`.

Each operation first calls ``steps(name)``: :class:`Steps` numbers them, and
a fault hook given to it can stop the process at any one of them (that is how
the crash tests kill the updater between every write, rename and fsync).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

TMP_SUFFIX = ".tmp-update"
"""Every temporary made here ends with this, so leftovers after a crash are easy to find."""

Fault = Callable[[int, str], None]


class Steps:
    """Counts the updater's disk operations and lets a fault hook stop it before any one.

    ``fault(n, name)`` is called before the n-th operation; it may raise or
    end the process. Without a hook this only counts (``names`` lists them).
    """

    def __init__(self, fault: Fault | None = None) -> None:
        self.fault = fault
        self.names: list[str] = []

    def __call__(self, name: str) -> None:
        self.names.append(name)
        if self.fault is not None:
            self.fault(len(self.names), name)


def no_steps(name: str) -> None:
    """The hook used when nobody is counting."""


StepHook = Callable[[str], None]


def fsync_dir(path: Path, steps: StepHook = no_steps) -> None:
    """Make a rename or new entry in ``path`` durable (a rename alone is not)."""
    steps(f"fsync dir {path.name}")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, steps: StepHook = no_steps, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    steps(f"create {tmp.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask (the updater's unit: 0077)
        steps(f"write {tmp.name}")
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        steps(f"fsync {tmp.name}")
        os.fsync(fd)
    finally:
        os.close(fd)
    steps(f"rename {tmp.name} -> {path.name}")
    os.replace(tmp, path)
    fsync_dir(path.parent, steps)


def copy_atomic(source: Path, target: Path, steps: StepHook = no_steps, mode: int = 0o644) -> None:
    """Copy a small file with :func:`write_atomic`."""
    write_atomic(target, source.read_bytes(), steps, mode)


def replace_symlink(link: Path, target: str, steps: StepHook = no_steps) -> None:
    """Point ``link`` at ``target`` by renaming a new link over it: never a moment without."""
    tmp = link.with_name(link.name + TMP_SUFFIX)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    steps(f"symlink {tmp.name} -> {target}")
    os.symlink(target, tmp)
    steps(f"rename {tmp.name} -> {link.name}")
    os.replace(tmp, link)
    fsync_dir(link.parent, steps)


def fsync_tree(path: Path) -> None:
    """Make every file and folder under ``path`` durable (after pip filled a release)."""
    for folder, _dirs, files in os.walk(path):
        for name in files:
            file = Path(folder, name)
            if file.is_symlink() or not file.is_file():
                continue
            fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def remove_tree(path: Path, steps: StepHook = no_steps) -> None:
    """Delete a folder and make the deletion durable; a crash midway is finished next time."""
    if not path.exists() and not path.is_symlink():
        return
    steps(f"remove {path.name}")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    fsync_dir(path.parent, steps)


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete temporaries a crash left in ``folder`` (not below it); returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.name.endswith(TMP_SUFFIX):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    if removed:
        fsync_dir(folder)
    return removed
