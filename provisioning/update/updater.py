"""The booth's updater: one run per timer tick, each leaving the booth on a good release.

A run, in order (each step persisted before the next, so a crash at any point
is finished or undone by the next run, see :meth:`UpdateRun._recover`):

1. refuse to do anything while the clock is earlier than the persisted floor
   (the Pi has no clock battery; TUF's expiry checks need a true clock);
2. refresh the TUF metadata with python-tuf's ngclient from the trusted root
   shipped read-only in the running release, lengths and a deadline bounded,
   and fsync the metadata folder;
3. read the channel's signed index; refuse a version that is marked bad or not
   newer than the version floor (the newest release that passed the gate);
4. download the bundle (verified against its signed length and hash) and
   install it into ``releases/<version>`` beside the running one;
5. only when the booth says it is idle and the clock is inside the maintenance
   window: ask the booth to hold the switch off (the ``update-hold`` file) and
   wait for it to say ``held`` (between visits, showing its "updating" screen);
   replace ``current`` by rename, check once more that it still holds (an
   emergency undoes the switch), restart the booth and wait for the health
   gate (the new version's status says ready and self-check pass); failing
   that, mark the version bad (never retried), switch back, restart;
6. after a healthy switch, delete releases other than the running one and the
   previous known-good one.

Every outcome is written to ``state.json`` in the update state folder; when
updates have been impossible for :attr:`Settings.alert_after`, ``alert`` is
set there and an ``update-blocked`` error is logged (TUF can detect a frozen
or withheld repository but not prevent it; this is how someone finds out).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import urllib3
from tuf.api import exceptions as tuf_errors

from kiosk.config import BoothConfig, MaintenanceWindow
from provisioning.layout import Layout
from provisioning.update import UpdateError
from provisioning.update._tuf import (
    FetcherInterface,
    Metadata,
    Root,
    TargetFile,
    Timestamp,
    Updater,
    UpdaterConfig,
)
from provisioning.update.booth_status import BoothStatus, read_status
from provisioning.update.bundle import (
    MAX_BUNDLE_BYTES,
    ROOT_FILE,
    TRUST_DIR,
    install_release,
    parse_version,
    read_source,
)
from provisioning.update.fsio import (
    StepHook,
    copy_atomic,
    fsync_dir,
    no_steps,
    remove_leftovers,
    remove_tree,
    replace_symlink,
    write_atomic,
)
from provisioning.update.publish import ISSUED, channel_target

log = logging.getLogger("provisioning.update")

STATE_FILE: Final = "state.json"
METADATA_DIR: Final = "metadata"
DOWNLOADS_DIR: Final = "downloads"
PARTIAL_SUFFIX: Final = ".part"
"""``downloads/<sha256>.part``: a bundle download cut short, continued by the next run."""
MAX_SWITCH_ATTEMPTS: Final = 3
"""A switch interrupted this often (power cut at every restart?) marks the version bad."""


class Result(enum.StrEnum):
    UP_TO_DATE = "up-to-date"
    UPDATED = "updated"
    WAITING = "waiting"
    ROLLED_BACK = "rolled-back"
    REFUSED = "refused"
    FAILED = "failed"
    CLOCK_BEHIND = "clock-behind"


_PROBLEMS: Final = {Result.REFUSED, Result.FAILED, Result.CLOCK_BEHIND}
"""Outcomes that count towards "updates have been impossible"."""


@dataclass(frozen=True)
class Outcome:
    result: Result
    message: str
    version: str | None = None


@dataclass(frozen=True)
class Settings:
    """What a run needs besides the layout; :meth:`from_config` reads the booth file."""

    channel: str = "stable"
    window: MaintenanceWindow = field(
        default_factory=lambda: MaintenanceWindow(datetime.min.time(), datetime.max.time())
    )
    time_zone: str = "UTC"
    repository: str | None = None
    """Base URL overriding the one the running release shipped with (``URL/metadata/``...)."""
    restart_command: Sequence[str] = ("systemctl", "restart", "telehealth-kiosk.service")
    health_deadline_s: float = 120.0
    health_poll_s: float = 0.5
    hold_timeout_s: float = 60.0
    """How long the booth has to answer the hold (say ``held``) before the switch is put off."""
    download_deadline_s: float = 1800.0
    socket_timeout_s: float = 30.0
    ca_file: Path | None = None
    """Trust only this certificate (chain) for the repository's https, e.g. a hub's own."""
    alert_after: timedelta = timedelta(days=3)
    max_bundle_bytes: int = MAX_BUNDLE_BYTES
    tuf: UpdaterConfig = field(
        default_factory=lambda: UpdaterConfig(
            max_root_rotations=32,
            root_max_length=64_000,
            timestamp_max_length=4_000,
            snapshot_max_length=64_000,
            targets_max_length=2_000_000,
            app_user_agent="telehealth-kiosk-update",
        )
    )

    @classmethod
    def from_config(cls, cfg: BoothConfig, **overrides: Any) -> Settings:
        return cls(
            channel=cfg.updates.channel,
            window=cfg.updates.maintenance_window,
            time_zone=cfg.site.time_zone,
            **overrides,
        )


@dataclass
class State:
    """``state.json``: everything the updater decides by, plus what a technician or alert reads."""

    floor_time: str | None = None
    """The clock is never believed earlier than this (UTC, ISO 8601)."""
    floor_version: str | None = None
    """The newest release that passed the health gate; nothing older is installed."""
    previous_good: str | None = None
    good: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    installing: str | None = None
    switch: dict[str, Any] | None = None
    last_run: str | None = None
    last_result: str | None = None
    last_message: str | None = None
    last_success: str | None = None
    impossible_since: str | None = None
    alert: bool = False

    @classmethod
    def load(cls, path: Path) -> State:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls()
        try:
            data = json.loads(raw)
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError, AttributeError) as exc:
            raise UpdateError(
                f"{path}: damaged ({exc}); move it aside and run again to start over "
                "(the version floor and the list of bad releases will be rebuilt as they recur)"
            ) from None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode() + b"\n"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class DeadlineFetcher(FetcherInterface):
    """HTTP downloads bounded in time as a whole, not only between bytes.

    urllib3's timeouts bound the wait for each read; a server that dribbles a
    byte a second would never trip them. Reads here return what has arrived
    (``read1``) and the deadline is checked between them.
    """

    CHUNK: Final = 64 * 1024

    def __init__(
        self,
        deadline_s: float,
        socket_timeout_s: float,
        user_agent: str,
        monotonic: Callable[[], float] = time.monotonic,
        ca_file: Path | None = None,
    ) -> None:
        self.deadline_s = deadline_s
        self.monotonic = monotonic
        self._deadline = monotonic() + deadline_s
        self._timeout = urllib3.Timeout(connect=socket_timeout_s, read=socket_timeout_s)
        self._pool = urllib3.PoolManager(
            headers={"User-Agent": user_agent},
            ca_certs=None if ca_file is None else str(ca_file),
        )

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self._chunks(url, self._request(url, {}))

    def _request(self, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        self._check(url)
        try:
            response = self._pool.request(
                "GET",
                url,
                headers=headers or None,
                preload_content=False,
                timeout=self._timeout,
                retries=urllib3.Retry(total=2, redirect=0, raise_on_status=False),
            )
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.TimeoutError):
                raise tuf_errors.SlowRetrievalError(f"{url}: no answer in time") from exc
            raise tuf_errors.DownloadError(f"{url}: {exc.reason}") from exc
        if response.status >= 400:
            response.release_conn()
            raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        return response

    def fetch_from(self, url: str, start: int) -> tuple[int, Iterator[bytes]]:
        """The bytes of ``url`` from ``start`` on if the server honours a Range request.

        Returns where the body starts: ``start`` for a 206 answer whose
        Content-Range says so, 0 for a server that sends the whole file (200).
        """
        if start <= 0:
            return 0, self.fetch(url)
        response = self._request(url, {"Range": f"bytes={start}-"})
        if response.status == 206:
            unit, _, spec = (response.headers.get("Content-Range") or "").partition(" ")
            first = spec.partition("-")[0]
            if unit != "bytes" or not first.isdigit() or int(first) != start:
                response.release_conn()
                raise tuf_errors.DownloadError(
                    f"{url}: asked for bytes from {start}, the server answered "
                    f"Content-Range {response.headers.get('Content-Range')!r}"
                )
            return start, self._chunks(url, response)
        if response.status != 200:
            response.release_conn()
            raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        return 0, self._chunks(url, response)

    def _chunks(self, url: str, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        try:
            while True:
                self._check(url)
                chunk = response.read1(self.CHUNK)
                if not chunk:
                    return
                yield chunk
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_errors.SlowRetrievalError(f"{url}: the server stopped sending") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise tuf_errors.DownloadError(f"{url}: {exc}") from exc
        finally:
            response.release_conn()

    def _check(self, url: str) -> None:
        if self.monotonic() > self._deadline:
            raise tuf_errors.SlowRetrievalError(
                f"{url}: the run's download deadline of {self.deadline_s:g} s passed"
            )


class UpdateRun:
    """One run of the updater against one installed booth (``layout``)."""

    def __init__(
        self,
        layout: Layout,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        steps: StepHook = no_steps,
        fetcher: DeadlineFetcher | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.layout = layout
        self.settings = settings
        self.clock = clock
        self.steps = steps
        self.sleep = sleep
        self.monotonic = monotonic
        self.fetcher = fetcher or DeadlineFetcher(
            settings.download_deadline_s,
            settings.socket_timeout_s,
            settings.tuf.app_user_agent or "telehealth-kiosk-update",
            monotonic,
            settings.ca_file,
        )
        self.state_dir = layout.update_state
        self.metadata_dir = self.state_dir / METADATA_DIR
        self.downloads = self.state_dir / DOWNLOADS_DIR
        self.state_path = layout.update_state_file
        self._restarted_at = 0.0
        self._targets_url = ""

    # ------------------------------------------------------------------ entry

    def run(self) -> Outcome:
        """Do one run and record its outcome; never raises for an expected problem."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        # The booth (another user) reads state.json for the update-blocked alert;
        # metadata/ and downloads/ below stay private to the updater.
        if self.state_dir.stat().st_mode & 0o755 != 0o755:
            self.state_dir.chmod(0o755)
        with self._locked():
            state = State.load(self.state_path)
            try:
                self._recover(state)
                outcome = self._run(state)
            except UpdateError as exc:
                outcome = Outcome(Result.FAILED, str(exc))
            self._record(state, outcome)
            return outcome

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One run at a time (a technician's run beside the timer's); the lock is the folder."""
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UpdateError(
                    f"{self.state_dir}: another update run is in progress; try again later"
                ) from None
            yield
        finally:
            os.close(fd)

    def _save(self, state: State) -> None:
        write_atomic(self.state_path, state.to_json(), self.steps, mode=0o644)

    # ------------------------------------------------------------------ facts

    def current_version(self) -> str | None:
        link = self.layout.current
        try:
            target = os.readlink(link)
        except OSError:
            return None
        return Path(target).name

    def _release_ready(self, state: State, version: str) -> bool:
        return version in state.installed and self.layout.release(version).is_dir()

    # --------------------------------------------------------------- recovery

    def _recover(self, state: State) -> None:
        """Finish or undo whatever a crash interrupted, before anything new."""
        self._release_hold()  # a hold lives only as long as the run that made it
        remove_leftovers(self.state_dir)
        remove_leftovers(self.downloads)
        remove_leftovers(self.layout.app)
        remove_leftovers(self.layout.releases)
        if self.metadata_dir.is_dir():
            # ngclient's own temporaries (tempfile names) from an interrupted refresh
            for entry in self.metadata_dir.glob("tmp*"):
                if entry.is_file() and not entry.name.endswith(".json"):
                    entry.unlink()
        current = self.current_version()
        if current is None:
            raise UpdateError(
                f"{self.layout.current}: missing; this booth has no installed release "
                "(install one with `kiosk-provision install`)"
            )
        if state.floor_version is None:  # first run on this booth: adopt what is installed
            state.floor_version = current
            state.good = [current]
            state.installed = [current]
            self._save(state)
        if state.installing is not None:
            version = state.installing
            if version != current:
                remove_tree(self.layout.release(version), self.steps)
            state.installing = None
            self._save(state)
        if state.switch is not None:
            self._recover_switch(state, current)

    def _recover_switch(self, state: State, current: str) -> None:
        assert state.switch is not None
        old, new = state.switch["from"], state.switch["to"]
        attempts = int(state.switch.get("attempts", 1))
        if new in state.bad:  # the rollback was under way
            log.warning("update: finishing the interrupted rollback from %s to %s", new, old)
            self._switch_link(old)
            self._restart()
            state.switch = None
            self._save(state)
        elif current == old:  # crashed before the link moved: try again later
            if attempts >= MAX_SWITCH_ATTEMPTS:
                log.error("update-failed: switching to %s was interrupted %d times", new, attempts)
                state.bad.append(new)
            state.switch = None
            self._save(state)
        else:  # the link points at the new release: run its health gate again
            status = read_status(self.layout.booth_status)
            if status is not None and status.healthy_as(new):
                self._commit(state, old, new)
            elif status is None:  # not running at all: nobody to interrupt
                self._gate_or_rollback(state, old, new)
            elif status.between_visits and self._hold(new):
                self._gate_or_rollback(state, old, new, held=True)
            # else someone is using it, or it did not hold: the gate runs on a later run

    # ------------------------------------------------------------------- run

    def _run(self, state: State) -> Outcome:
        now = self.clock()
        floor = _parse_iso(state.floor_time)
        if floor is not None and now < floor:
            return Outcome(
                Result.CLOCK_BEHIND,
                f"the clock says {_iso(now)}, earlier than {_iso(floor)} already seen; "
                "nothing done until the time is synchronised",
            )
        if state.switch is not None:
            return Outcome(Result.WAITING, "a switch waits for the booth to be idle", None)
        current = self.current_version()
        assert current is not None
        updater = self._updater(current)
        try:
            updater.refresh()
            self._advance_floor(state, now)
            index = self._channel_index(updater)
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise UpdateError(
                f"update metadata refused ({type(exc).__name__}: {exc}); nothing was changed"
            ) from None
        finally:
            self._fsync_metadata()
        version = index["version"]
        if version == current:
            return Outcome(Result.UP_TO_DATE, f"{current} is the newest on {self.settings.channel}")
        if version in state.bad:
            return Outcome(
                Result.REFUSED,
                f"{version} failed its health gate before and is never retried; "
                "publish a newer release",
                version,
            )
        assert state.floor_version is not None
        if parse_version(version) <= parse_version(state.floor_version):
            return Outcome(
                Result.REFUSED,
                f"{version} is not newer than {state.floor_version} (the version floor); "
                "older releases are never installed",
                version,
            )
        if not self._release_ready(state, version):
            self._download_and_install(state, updater, index)
        return self._maybe_switch(state, current, version, now)

    def _updater(self, current: str) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        trusted = self.metadata_dir / ROOT_FILE
        if not trusted.exists():
            shipped = self.layout.release(current) / TRUST_DIR / ROOT_FILE
            if not shipped.is_file():
                raise UpdateError(
                    f"{shipped}: missing; the running release shipped no trusted root, so "
                    "no update can be verified (reinstall it from a release bundle)"
                )
            copy_atomic(shipped, trusted, self.steps, mode=0o644)
        if self.settings.repository is not None:
            base = self.settings.repository.rstrip("/") + "/"
            source = {"metadata_url": base + "metadata/", "targets_url": base + "targets/"}
        else:
            source = read_source(self.layout.release(current))
        self._targets_url = source["targets_url"].rstrip("/") + "/"
        try:
            return Updater(
                str(self.metadata_dir),
                source["metadata_url"],
                str(self.downloads),
                source["targets_url"],
                fetcher=self.fetcher,
                config=self.settings.tuf,
                bootstrap=None,
            )
        except (tuf_errors.RepositoryError, OSError, ValueError) as exc:
            raise UpdateError(
                f"{trusted}: the trusted root cannot be loaded ({exc}); move "
                f"{self.metadata_dir} aside to start again from the release's own root"
            ) from None

    def _fsync_metadata(self) -> None:
        """ngclient renames files into place but never fsyncs; make the trusted state durable."""
        if not self.metadata_dir.is_dir():
            return
        for folder in (self.metadata_dir / "root_history", self.metadata_dir):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.is_file() and not entry.is_symlink():
                    fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            fsync_dir(folder, self.steps)

    def _advance_floor(self, state: State, now: datetime) -> None:
        """Raise the clock floor to the later of now and when the trusted timestamp was signed."""
        candidates = [now]
        if floor := _parse_iso(state.floor_time):
            candidates.append(floor)
        try:
            ts = Metadata[Timestamp].from_bytes((self.metadata_dir / "timestamp.json").read_bytes())
            issued = _parse_iso(ts.signed.unrecognized_fields.get(ISSUED))
            if issued is not None:
                candidates.append(issued)
        except (OSError, ValueError, tuf_errors.RepositoryError):
            pass
        except Exception:
            log.warning("update: timestamp.json has an unreadable %s field", ISSUED)
        state.floor_time = _iso(max(candidates))

    def _channel_index(self, updater: Updater) -> dict[str, str]:
        path = channel_target(self.settings.channel)
        info = updater.get_targetinfo(path)
        if info is None:
            raise UpdateError(
                f"channel {self.settings.channel!r} is not published in the repository "
                "(updates.channel in the booth file names it)"
            )
        if info.length > 4096:
            raise UpdateError(f"{path}: {info.length} bytes is too long for a channel index")
        self.downloads.mkdir(parents=True, exist_ok=True, mode=0o700)
        local = self.downloads / f"channel-{self.settings.channel}.json"
        updater.download_target(info, str(local))
        try:
            data = json.loads(local.read_bytes())
        except (OSError, ValueError) as exc:
            raise UpdateError(f"{path}: not a channel index ({exc})") from None
        finally:
            local.unlink(missing_ok=True)
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("version", "bundle")
        ):
            raise UpdateError(f"{path}: not a channel index (needs version and bundle)")
        parse_version(data["version"], f"{path}: version")
        return {"version": data["version"], "bundle": data["bundle"]}

    def _download_and_install(self, state: State, updater: Updater, index: dict[str, str]) -> None:
        version = index["version"]
        try:
            info = updater.get_targetinfo(index["bundle"])
            if info is None:
                raise UpdateError(f"{index['bundle']}: named by the channel but not published")
            if info.length > self.settings.max_bundle_bytes:
                raise UpdateError(
                    f"{index['bundle']}: {info.length} bytes, more than the "
                    f"{self.settings.max_bundle_bytes} a bundle may have; not downloaded"
                )
            final = self.downloads / Path(info.path).name
            if updater.find_cached_target(info, str(final)) is None:
                self._download_bundle(info, final)
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise UpdateError(
                f"bundle {version} refused ({type(exc).__name__}: {exc}); nothing was installed"
            ) from None
        state.installing = version
        self._save(state)
        target = self.layout.release(version)
        if target.exists() or target.is_symlink():
            remove_tree(target, self.steps)
        try:
            install_release(final, self.layout, self.steps, expect=version)
        except UpdateError:
            remove_tree(target, self.steps)
            state.installing = None
            self._save(state)
            raise
        state.installing = None
        state.installed = [*state.installed, version]
        self._save(state)
        remove_tree(final, self.steps)
        log.info("update: %s installed beside the running release", version)

    def _target_url(self, info: TargetFile) -> str:
        """Where ngclient would fetch ``info`` from (hash-prefixed under consistent snapshots)."""
        path = info.path
        root = Metadata[Root].from_bytes((self.metadata_dir / ROOT_FILE).read_bytes())
        if root.signed.consistent_snapshot and self.settings.tuf.prefix_targets_with_hash:
            folder, sep, name = path.rpartition("/")
            path = f"{folder}{sep}{info.hashes['sha256']}.{name}"
        return self._targets_url + path

    def _download_bundle(self, info: TargetFile, final: Path) -> None:
        """Download a bundle into ``final``, continuing a download an earlier run left partial.

        The bytes so far are kept as ``downloads/<sha256>.part`` (named by the
        signed hash, so a partial is only ever continued for the same bundle)
        and the rest is asked for with an HTTP Range request; a server that
        answers with the whole file (200) starts it over. Nothing is trusted
        until the whole file has the signed length and hash; one that is too
        long or has the wrong hash is deleted.
        """
        self.downloads.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.downloads / (info.hashes["sha256"] + PARTIAL_SUFFIX)
        for stale in self.downloads.glob("*" + PARTIAL_SUFFIX):
            if stale != partial:  # another bundle's, superseded by this one
                stale.unlink()
        have = partial.stat().st_size if partial.is_file() else 0
        if have > info.length:
            partial.unlink()
            have = 0
        if have < info.length:
            self.steps(f"download {final.name}")
            self._fetch_into(partial, have, info)
        try:
            with partial.open("rb") as f:
                info.verify_length_and_hashes(f)
        except tuf_errors.LengthOrHashMismatchError:
            partial.unlink()  # never continued: start over next time
            raise
        self.steps(f"rename {partial.name} -> {final.name}")
        partial.replace(final)
        fsync_dir(self.downloads, self.steps)

    def _fetch_into(self, partial: Path, have: int, info: TargetFile) -> None:
        url = self._target_url(info)
        start, chunks = self.fetcher.fetch_from(url, have)
        if have:
            log.info("update: continuing %s from byte %d (server: from %d)", url, have, start)
        size = start
        fd: int | None = None
        try:
            for chunk in chunks:
                if size + len(chunk) > info.length:
                    if fd is not None:
                        os.close(fd)
                        fd = None
                    partial.unlink(missing_ok=True)
                    raise tuf_errors.DownloadLengthMismatchError(
                        f"{url}: more than the signed {info.length} bytes"
                    )
                if fd is None:  # opened with the first bytes: never an empty partial
                    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
                    fd = os.open(partial, flags, 0o600)
                    os.ftruncate(fd, start)
                    os.lseek(fd, start, os.SEEK_SET)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                size += len(chunk)
        except tuf_errors.DownloadLengthMismatchError:
            raise
        except tuf_errors.DownloadError as exc:
            raise tuf_errors.DownloadError(
                f"{exc}; {size} of {info.length} bytes kept, continued on the next run"
            ) from exc
        finally:
            if fd is not None:
                os.fsync(fd)
                os.close(fd)
        if size < info.length:
            raise tuf_errors.DownloadError(
                f"{url}: the server stopped after {size} of {info.length} bytes; "
                "the rest is asked for on the next run"
            )

    # ---------------------------------------------------------------- switch

    def in_window(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.settings.time_zone)).time()
        return self.settings.window.contains(local)

    def _maybe_switch(self, state: State, current: str, version: str, now: datetime) -> Outcome:
        if not self.in_window(now):
            window = self.settings.window
            return Outcome(
                Result.WAITING,
                f"{version} is installed; it starts in the maintenance window "
                f"{window.start:%H:%M}-{window.end:%H:%M}",
                version,
            )
        status = read_status(self.layout.booth_status)
        if status is None or not status.between_visits:
            doing = (
                "has not reported its state" if status is None else f"is busy ({status.activity})"
            )
            return Outcome(
                Result.WAITING,
                f"{version} is installed; it starts when the booth is idle (the booth {doing})",
                version,
            )
        if not self._hold(version):
            return Outcome(
                Result.WAITING,
                f"{version} is installed; the booth did not hold the switch off within "
                f"{self.settings.hold_timeout_s:g} s (a visit began, or it did not answer); "
                "tried again on a later run",
                version,
            )
        state.switch = {"from": current, "to": version, "attempts": 1}
        self._save(state)
        return self._gate_or_rollback(state, current, version, held=True)

    def _hold(self, version: str) -> bool:
        """Ask the booth to hold the switch off and wait until it says ``held``.

        The booth answers only between visits (and then shows its "updating"
        screen, 911/988 still on it); a visit that starts first wins, and the
        hold is withdrawn. False (hold withdrawn) unless the booth held.
        """
        body = json.dumps({"version": version, "at": int(time.time())}).encode() + b"\n"
        try:
            # systemd makes the folder (RuntimeDirectory=); a test's root may not have it yet.
            self.layout.update_hold.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.layout.update_hold, body, mode=0o644)  # tmpfs: no crash steps
        except OSError as exc:
            log.warning("update: cannot ask the booth to hold (%s)", exc.strerror)
            return False
        deadline = self.monotonic() + self.settings.hold_timeout_s
        while True:
            status = read_status(self.layout.booth_status)
            if status is not None and status.activity == "held":
                return True
            if status is not None and not status.between_visits:
                log.info("update: the booth became busy (%s) before holding", status.activity)
                break
            if self.monotonic() >= deadline:
                log.warning("update: the booth did not hold within the deadline")
                break
            self.sleep(self.settings.health_poll_s)
        self._release_hold()
        return False

    def _release_hold(self) -> None:
        """Withdraw the hold; the booth returns to normal service when the file is gone."""
        try:
            self.layout.update_hold.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("update: cannot remove the hold file (%s)", exc.strerror)

    def _still_held(self) -> BoothStatus | None:
        """The status read just before the restart: None while the booth still holds."""
        status = read_status(self.layout.booth_status)
        if status is not None and status.activity == "held":
            return None
        return status or BoothStatus("?", "starting", False, "pending")

    def _switch_link(self, version: str) -> None:
        target = f"releases/{version}"
        if os.readlink(self.layout.current) != target:
            replace_symlink(self.layout.current, target, self.steps)

    def _restart(self) -> bool:
        """Restart the booth with the restart hook; False if the hook failed."""
        try:
            self.layout.booth_status.unlink()  # a stale status must never pass the gate
        except FileNotFoundError:
            pass
        except OSError as exc:  # the gate also requires a status written after the restart
            log.warning("update: cannot remove the old booth status: %s", exc.strerror)
        self._restarted_at = time.time()
        self.steps("restart booth")
        try:
            done = subprocess.run(
                list(self.settings.restart_command),
                capture_output=True,
                text=True,
                timeout=self.settings.health_deadline_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("update: restarting the booth failed: %s", exc)
            return False
        if done.returncode != 0:
            log.error(
                "update: restarting the booth failed (exit %d): %s",
                done.returncode,
                done.stderr.strip()[-300:],
            )
            return False
        return True

    def _fresh(self) -> bool:
        try:
            return self.layout.booth_status.stat().st_mtime >= self._restarted_at - 1.0
        except OSError:
            return False

    def _healthy(self, version: str) -> bool:
        deadline = self.monotonic() + self.settings.health_deadline_s
        while True:
            status = read_status(self.layout.booth_status)
            if status is not None and not self._fresh():
                status = None  # written before the restart: says nothing about this start
            if status is not None and status.healthy_as(version):
                return True
            if status is not None and status.version == version and status.self_check == "fail":
                return False
            if self.monotonic() >= deadline:
                return False
            self.sleep(self.settings.health_poll_s)

    def _gate_or_rollback(self, state: State, old: str, new: str, *, held: bool = False) -> Outcome:
        self._switch_link(new)
        if held and (left := self._still_held()) is not None:
            # An emergency (or anything) since the booth held: never restart under it.
            log.warning("update: the booth left its hold (%s); switching back", left.activity)
            self._switch_link(old)
            self._release_hold()
            state.switch = None
            self._save(state)
            return Outcome(
                Result.WAITING,
                f"{new} is installed; the booth left its hold ({left.activity}) just before "
                "the restart, so it was not restarted; tried again on a later run",
                new,
            )
        restarted = self._restart()
        self._release_hold()
        if restarted and self._healthy(new):
            self._commit(state, old, new)
            return Outcome(Result.UPDATED, f"{new} is running and healthy (was {old})", new)
        log.error("update-failed: %s did not pass its health gate; rolling back to %s", new, old)
        state.bad = [*state.bad, new]
        self._save(state)
        self._switch_link(old)
        back = self._restart() and self._healthy(old)
        state.switch = None
        self._save(state)
        remove_tree(self.layout.release(new), self.steps)
        state.installed = [v for v in state.installed if v != new]
        self._save(state)
        return Outcome(
            Result.ROLLED_BACK,
            f"{new} did not report ready and a passing self-check within "
            f"{self.settings.health_deadline_s:g} s; back on {old}"
            + ("" if back else " (which has not reported healthy either: check the booth)")
            + f"; {new} is marked bad and never retried",
            new,
        )

    def _commit(self, state: State, old: str, new: str) -> None:
        state.previous_good = old
        state.good = [*[v for v in state.good if v != new], new]
        state.floor_version = new
        state.switch = None
        self._save(state)
        log.info("update: now running %s (was %s)", new, old)
        self._prune(state, keep={new, old})

    def _prune(self, state: State, keep: set[str]) -> None:
        """Delete releases beyond the running one and the previous known-good one.

        Only after a healthy switch, and only release folders (named by a
        version) that ``current`` does not name: never the running release.
        """
        running = self.current_version()
        if running is not None:
            keep = keep | {running}
        for folder in sorted(self.layout.releases.iterdir()):
            try:
                parse_version(folder.name)
            except UpdateError:
                continue  # not a release (and not ours to judge)
            if folder.name in keep or not folder.is_dir() or folder.is_symlink():
                continue
            remove_tree(folder, self.steps)
            log.info("update: release %s deleted (neither running nor previous good)", folder.name)
        kept = [v for v in state.installed if v in keep]
        if kept != state.installed:
            state.installed = kept
            self._save(state)

    # ---------------------------------------------------------------- record

    def _record(self, state: State, outcome: Outcome) -> None:
        now = self.clock()
        floor = _parse_iso(state.floor_time)
        believed = max(now, floor) if floor is not None else now
        state.last_run = _iso(believed)
        state.last_result = str(outcome.result)
        state.last_message = outcome.message
        if outcome.result in _PROBLEMS:
            if state.impossible_since is None:
                state.impossible_since = state.last_success or _iso(believed)
            since = _parse_iso(state.impossible_since)
            assert since is not None
            state.alert = believed - since >= self.settings.alert_after
        else:
            state.last_success = _iso(believed)
            state.impossible_since = None
            state.alert = False
        self._save(state)
        level = logging.INFO if outcome.result not in _PROBLEMS else logging.WARNING
        if outcome.result is Result.ROLLED_BACK:
            level = logging.ERROR
        log.log(level, "update %s: %s", outcome.result, outcome.message)
        if state.alert:
            log.error(
                "update-blocked: no successful update since %s (%s): %s",
                state.impossible_since,
                outcome.result,
                outcome.message,
            )


def read_state(layout: Layout) -> State:
    """The updater's state, for ``status`` commands and alerts."""
    return State.load(layout.update_state / STATE_FILE)
