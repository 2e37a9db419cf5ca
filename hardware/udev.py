"""Hot-plug of cameras, audio devices and USB sticks, read from udev.

The booth learns what a resident or technician plugged in from udev's event
stream. Everything that comes from udev is treated as untrusted input: a
malformed event is dropped and logged (by exception type, never by property
value), and the watcher carries on, because a kiosk that stops noticing
headsets mid-shift is worse than one that misses a single event.

Classification rules (``classify``), from udev's own rules
(``60-persistent-v4l.rules``, ``60-persistent-storage.rules``,
``78-sound-card.rules``):

``video4linux`` -> CAMERA
    A capture node (``ID_V4L_CAPABILITIES`` contains ``:capture:``) of a USB
    device. Metadata nodes of UVC webcams (``:``) and the Pi's codec nodes
    (``/dev/video1x``) have no ``:capture:``. Capture nodes on the Pi's own
    buses (unicam, the ISP, rp1-cfe) exist whether or not a camera is
    attached, so they are not counted: a Pi camera on the CSI connector is
    found through libcamera by the camera backend; udev never reports it as
    hot-plugged.

``sound`` -> HEADSET / SPEAKER / MICROPHONE
    Only the card device (``.../sound/cardN``); its ``controlC*``/``pcm*``
    children are ignored. ALSA announces a card with ``add`` before its
    children exist, and udev sets the card's properties (``ID_BUS``,
    ``SOUND_FORM_FACTOR``, ``SOUND_INITIALIZED=1``) only on the ``change``
    event that follows once the card is usable. So, unlike every other
    subsystem, a sound card is *added* by a ``change`` (or ``add``) event that
    carries ``SOUND_INITIALIZED``; this is what PulseAudio and PipeWire do too.
    ``SOUND_FORM_FACTOR``: headset, headphone, handset -> HEADSET (worn, so the
    resident is not overheard); speaker, hands-free -> SPEAKER; microphone,
    webcam -> MICROPHONE (a webcam's microphone; its video node is a separate
    CAMERA); internal (HDMI, the Pi's jack: always present, set up by
    configuration) and any other value -> nothing. A USB card with no form
    factor -> HEADSET: udev only guesses a form factor from the product name,
    and most unnamed USB audio devices plugged into a booth are headsets (some
    speakerphones, such as ones named "SPEAK", land here too).

``block`` -> STORAGE
    A USB disk or partition that holds a filesystem (``ID_FS_TYPE`` set,
    ``ID_FS_USAGE`` absent or ``filesystem``). A stick with a partition table
    is reported once per formatted partition, not for the bare disk.

Actions: ``add`` -> DeviceAdded, ``remove`` -> DeviceRemoved (udev sends
the device's stored properties with ``remove``), the sound-card ``change``
above -> DeviceAdded, anything else -> nothing. ``DeviceAdded`` can repeat for
a device already present (a re-triggered sound card), so consumers should
treat it as "present", not count it.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import re
import select
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from hardware.events import DeviceAdded, DeviceKind, DeviceRemoved, HardwareEvent
from kiosk.errors import HardwareError

__all__ = [
    "UDEV_RUN_DIR",
    "WATCHED_SUBSYSTEMS",
    "FakeDevice",
    "FakeMonitor",
    "HotplugWatcher",
    "MonitorLike",
    "classify",
    "present_devices",
    "present_events",
]

_log = logging.getLogger("hardware.udev")

UDEV_RUN_DIR = Path("/run/udev")
"""Where a running udevd keeps its control socket (``control``) and database."""

WATCHED_SUBSYSTEMS = ("video4linux", "sound", "block")
"""The only subsystems :func:`classify` can recognise; monitors filter to these."""

_ADD = "add"
_REMOVE = "remove"
_CHANGE = "change"

_CARD_NAME = re.compile(r"card[0-9]+", re.ASCII)

_FORM_FACTORS: Mapping[str, DeviceKind] = {
    "headset": DeviceKind.HEADSET,
    "headphone": DeviceKind.HEADSET,
    "handset": DeviceKind.HEADSET,
    "speaker": DeviceKind.SPEAKER,
    "hands-free": DeviceKind.SPEAKER,
    "microphone": DeviceKind.MICROPHONE,
    "webcam": DeviceKind.MICROPHONE,
}

_MAX_EVENTS_PER_WAKEUP = 64
"""Bound one reader callback so an event storm cannot starve the booth's loop;
the descriptor stays readable, so the rest is read on the next iteration."""

_MAX_MONITOR_FAILURES = 10
"""Consecutive failed reads after which the watcher gives up instead of
spinning on a broken descriptor and flooding the log."""


# --- classification -------------------------------------------------------------------


def _text(value: object) -> str | None:
    """``value`` as a plain ``str`` if it is text (or bytes from libudev), else ``None``."""
    if isinstance(value, str):
        return str.__str__(value)  # a plain copy: str subclasses may override anything
    if isinstance(value, bytes):
        return bytes.decode(value, "utf-8", "replace")
    if isinstance(value, bytearray):
        return bytearray.decode(value, "utf-8", "replace")
    return None


class _Props:
    """Read-only view of udev properties that answers ``None`` for anything unusable.

    A broken key (a mapping that raises, a value that is not text) is treated
    as absent, so the rest of the event can still be classified.
    """

    __slots__ = ("_mapping",)

    def __init__(self, properties: object) -> None:
        try:
            self._mapping = properties if isinstance(properties, Mapping) else None
        except Exception:
            self._mapping = None

    def get(self, key: str) -> str | None:
        if self._mapping is None:
            return None
        try:
            return _text(self._mapping.get(key))
        except Exception:
            return None


def _on_usb(props: _Props) -> bool:
    # usb_id sets ID_BUS=usb; for a SATA disk in a USB enclosure ata_id may win
    # ID_BUS, but usb_id's ID_USB_DRIVER is still there.
    return props.get("ID_BUS") == "usb" or bool(props.get("ID_USB_DRIVER"))


def _camera_kind(props: _Props) -> DeviceKind | None:
    capabilities = props.get("ID_V4L_CAPABILITIES") or ""
    if ":capture:" in capabilities and _on_usb(props):
        return DeviceKind.CAMERA
    return None


def _is_sound_card(props: _Props, device_node: object) -> bool:
    devpath = props.get("DEVPATH")
    if devpath:
        return _CARD_NAME.fullmatch(devpath.rpartition("/")[2]) is not None
    # Without DEVPATH: the card is the one sound device with no /dev node.
    return not _text(device_node)


def _card_number(props: _Props) -> int | None:
    """The ALSA card number from the card's DEVPATH (``.../sound/card3`` -> 3), if any."""
    name = (props.get("DEVPATH") or "").rpartition("/")[2]
    if _CARD_NAME.fullmatch(name) and len(name) <= 8:
        return int(name[4:])
    return None


def _sound_kind(props: _Props, device_node: object) -> DeviceKind | None:
    if not _is_sound_card(props, device_node):
        return None
    if props.get("SOUND_CLASS") == "modem":
        return None
    form_factor = (props.get("SOUND_FORM_FACTOR") or "").strip().casefold()
    if form_factor:
        return _FORM_FACTORS.get(form_factor)
    return DeviceKind.HEADSET if _on_usb(props) else None


def _storage_kind(props: _Props) -> DeviceKind | None:
    if not _on_usb(props):
        return None
    if props.get("DEVTYPE") not in ("disk", "partition"):
        return None
    if not props.get("ID_FS_TYPE"):
        return None
    usage = props.get("ID_FS_USAGE")
    if usage is not None and usage != "filesystem":
        return None  # swap, RAID members, encrypted containers
    return DeviceKind.STORAGE


def _classify(
    action: object, subsystem: object, properties: object, device_node: object
) -> DeviceAdded | DeviceRemoved | None:
    """:func:`classify` without its last-resort guard (tests check it stands alone)."""
    act = _text(action)
    if act not in (_ADD, _REMOVE, _CHANGE):
        return None
    sub = _text(subsystem)
    props = _Props(properties)
    if sub == "sound":
        kind = _sound_kind(props, device_node)
        if kind is None:
            return None
        card = _card_number(props)
        if act == _REMOVE:
            return DeviceRemoved(kind, card)
        # add or change: the card is usable only once udev has marked it so.
        return DeviceAdded(kind, card) if props.get("SOUND_INITIALIZED") == "1" else None
    if act == _CHANGE:
        return None
    if sub == "video4linux":
        kind = _camera_kind(props)
    elif sub == "block":
        kind = _storage_kind(props)
    else:
        return None
    if kind is None:
        return None
    return DeviceAdded(kind) if act == _ADD else DeviceRemoved(kind)


def classify(
    action: object,
    subsystem: object,
    properties: Mapping[str, object] | object,
    device_node: object,
) -> DeviceAdded | DeviceRemoved | None:
    """Map one udev event to a booth device event, or ``None`` if it is not one.

    Pure and total: any input, however malformed, gives a result and never an
    exception, because it comes straight from outside the booth. The rules are
    in this module's docstring.
    """
    try:
        return _classify(action, subsystem, properties, device_node)
    except Exception:
        return None


# --- watcher --------------------------------------------------------------------------


class MonitorLike(Protocol):
    """The part of :class:`pyudev.Monitor` the watcher uses (FakeMonitor has it too)."""

    def fileno(self) -> int: ...

    def start(self) -> None: ...

    def poll(self, timeout: float | None = None) -> Any: ...


class HotplugWatcher:
    """Turns a udev monitor's events into ``DeviceAdded``/``DeviceRemoved`` on the loop.

    It reads the monitor from the event loop (``add_reader``) rather than a
    thread, so events reach ``emit`` in the loop's thread with no locking.
    Construct, start and stop it from the loop's thread.
    """

    _guard_events: ClassVar[bool] = True
    """Catch errors of single events. Only the tests' twin turns this off."""

    def __init__(
        self,
        monitor: MonitorLike,
        emit: Callable[[HardwareEvent], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._monitor = monitor
        self._emit = emit
        self._loop = loop
        self._fd: int | None = None
        self._monitor_failures = 0

    @classmethod
    def for_system(
        cls,
        emit: Callable[[HardwareEvent], None],
        loop: asyncio.AbstractEventLoop,
        *,
        run_dir: Path = UDEV_RUN_DIR,
    ) -> Self:
        """A watcher on the machine's udev, filtered to the subsystems that matter.

        Raises :class:`HardwareError` when udev cannot deliver events, so the
        caller can run on without hot-plug. libudev itself would hand back a
        monitor that silently never fires when udevd is not running, so
        udevd's control socket is checked first.
        """
        problem = _udev_not_running(run_dir)
        if problem:
            raise HardwareError(
                f"udev is not running ({problem}): hot-plug events will not arrive; "
                "start systemd-udevd (`systemctl start systemd-udevd`, or "
                "`/lib/systemd/systemd-udevd --daemon` where systemd is not PID 1)"
            )
        try:
            import pyudev  # the real backend, imported only where it is used

            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            for subsystem in WATCHED_SUBSYSTEMS:
                monitor.filter_by(subsystem=subsystem)
        except Exception as exc:
            raise HardwareError(
                f"udev monitor could not be opened ({type(exc).__name__}: {exc}): "
                "hot-plug events will not arrive; check that libudev is installed and "
                "systemd-udevd is running"
            ) from exc
        return cls(monitor, emit, loop)

    @property
    def running(self) -> bool:
        """Whether the loop is watching the monitor."""
        return self._fd is not None

    def start(self) -> None:
        """Start the monitor and watch it from the loop; does nothing if running."""
        if self._fd is not None:
            return
        try:
            self._monitor.start()
            fd = self._monitor.fileno()
            self._loop.add_reader(fd, self._on_readable)
        except Exception as exc:
            raise HardwareError(
                f"udev monitor could not be started ({type(exc).__name__}: {exc}): "
                "hot-plug events will not arrive"
            ) from exc
        self._fd = fd
        self._monitor_failures = 0

    def stop(self) -> None:
        """Stop watching; safe to call twice or on a closed loop."""
        fd, self._fd = self._fd, None
        if fd is not None:
            self._loop.remove_reader(fd)

    def _on_readable(self) -> None:
        for _ in range(_MAX_EVENTS_PER_WAKEUP):
            if self._fd is None:
                return  # stopped by emit or by the failure limit
            try:
                device = self._monitor.poll(timeout=0)
            except Exception as exc:
                if not self._guard_events:
                    raise
                self._monitor_failed(exc)
                return
            self._monitor_failures = 0
            if device is None:
                return
            self._handle_device(device)

    def _monitor_failed(self, exc: Exception) -> None:
        self._monitor_failures += 1
        if self._monitor_failures >= _MAX_MONITOR_FAILURES:
            _log.error(
                "udev monitor failed %d times in a row (%s): hot-plug detection stopped",
                self._monitor_failures,
                type(exc).__name__,
            )
            self.stop()
            return
        # ENOBUFS (events lost in a storm) and the like pass; the next read works.
        _log.warning("udev monitor read failed (%s); carrying on", type(exc).__name__)

    def _handle_device(self, device: Any) -> None:
        try:
            event = classify(device.action, device.subsystem, device.properties, device.device_node)
        except Exception as exc:
            if not self._guard_events:
                raise
            # The exception's text may quote property values: log its type only.
            _log.warning("dropped a udev event: %s while reading the device", type(exc).__name__)
            return
        if event is None:
            return
        try:
            self._emit(event)
        except Exception:
            if not self._guard_events:
                raise
            _log.exception("hot-plug %s could not be delivered", type(event).__name__)


def _udev_not_running(run_dir: Path) -> str | None:
    """Why udevd is evidently not running, or ``None`` if it seems to be."""
    control = run_dir / "control"
    if not run_dir.exists():
        return f"{run_dir} missing"
    if not control.exists():
        return f"{control} missing"
    # A stopped udevd leaves its socket behind; only a live one accepts.
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
            probe.settimeout(1.0)
            probe.connect(str(control))
    except ConnectionRefusedError:
        return f"{control} is left over from a stopped udevd"
    except OSError:
        pass  # not allowed to look (the booth does not run as root): assume it runs
    return None


# --- start-up scan --------------------------------------------------------------------


def present_devices(context: Any = None) -> set[DeviceKind]:
    """Kinds of device plugged in now, classified as if each had just been added.

    Never raises: without usable udev the booth starts with what it was
    configured to have, so an empty set (and a log line) is the right answer.
    ``context`` is a :class:`pyudev.Context` or anything with ``list_devices``.
    """
    return _present_devices(context, guarded=True)


def present_events(context: Any = None) -> list[DeviceAdded]:
    """Devices plugged in now, each as the ``DeviceAdded`` it would have made (with its card)."""
    found: list[DeviceAdded] = []
    _present_devices(context, guarded=True, into=found)
    return found


def _present_devices(
    context: Any, *, guarded: bool, into: list[DeviceAdded] | None = None
) -> set[DeviceKind]:
    found: set[DeviceKind] = set()
    try:
        if context is None:
            import pyudev  # the real backend, imported only where it is used

            context = pyudev.Context()
        for subsystem in WATCHED_SUBSYSTEMS:
            devices: Iterable[Any] = context.list_devices(subsystem=subsystem)
            for device in devices:
                try:
                    event = classify(_ADD, device.subsystem, device.properties, device.device_node)
                except Exception as exc:
                    if not guarded:
                        raise
                    _log.warning("skipped a device in the udev scan: %s", type(exc).__name__)
                    continue
                if isinstance(event, DeviceAdded):
                    found.add(event.kind)
                    if into is not None:
                        into.append(event)
    except Exception as exc:
        if not guarded:
            raise
        _log.warning(
            "udev scan failed (%s): starting without knowing what is plugged in",
            type(exc).__name__,
        )
    return found


# --- simulated twin -------------------------------------------------------------------


@dataclass(frozen=True, eq=False, slots=True)
class FakeDevice:
    """What :class:`FakeMonitor` delivers: the attributes the watcher reads from a
    :class:`pyudev.Device`."""

    action: object
    subsystem: object
    properties: object
    device_node: object = None


class FakeMonitor:
    """A stand-in for :class:`pyudev.Monitor` that delivers events you trigger.

    Pipe-backed like the real netlink socket: each queued event writes one byte,
    so the event loop's reader fires exactly as it would for udev, and
    ``poll`` consumes one byte per event. Events for subsystems outside
    ``filter_by`` are dropped before they are queued, as the kernel-side filter
    would. Triggering is safe from another thread; polling belongs to one.
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._queue: collections.deque[object] = collections.deque()
        self._lock = threading.Lock()
        self._filters: list[tuple[str, str | None]] = []
        self._started = False
        self._closed = False
        self._seqnum = 1000

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def started(self) -> bool:
        """Like :attr:`pyudev.Monitor.started`."""
        return self._started

    @property
    def pending(self) -> int:
        """Events triggered but not yet polled."""
        return len(self._queue)

    def fileno(self) -> int:
        """The descriptor that becomes readable while events are pending."""
        return self._read_fd

    def start(self) -> None:
        """Like :meth:`pyudev.Monitor.start`; events are queued even before it."""
        self._started = True

    def filter_by(self, subsystem: str, device_type: str | None = None) -> None:
        """Deliver only events of these subsystems (and ``DEVTYPE``), like pyudev."""
        self._filters.append((subsystem, device_type))

    def poll(self, timeout: float | None = None) -> object | None:
        """The next event, waiting up to ``timeout`` seconds (``None``: forever)."""
        self._started = True
        readable, _, _ = select.select([self._read_fd], [], [], timeout)
        if not readable:
            return None
        try:
            if not os.read(self._read_fd, 1):
                return None
        except BlockingIOError:
            return None
        try:
            return self._queue.popleft()
        except IndexError:
            return None

    def trigger(
        self,
        action: object,
        subsystem: object,
        properties: Mapping[str, object] | object,
        device_node: object = None,
    ) -> bool:
        """Queue one event as udev would deliver it; ``False`` if the filter drops it.

        Any values are accepted, so tests can deliver malformed events too.
        """
        if not self._passes_filter(subsystem, properties):
            return False
        self.trigger_device(FakeDevice(action, subsystem, properties, device_node))
        return True

    def trigger_device(self, device: object) -> None:
        """Queue any device-like object, even one that raises when read (for tests)."""
        with self._lock:
            self._queue.append(device)
            try:
                os.write(self._write_fd, b"\x00")
            except BlockingIOError:
                self._queue.pop()
                raise OSError(
                    errno.ENOBUFS, "FakeMonitor: too many events pending; poll some first"
                ) from None

    def trigger_kind(self, action: str, kind: DeviceKind) -> None:
        """Queue the events a real device of ``kind`` makes when plugged or unplugged.

        ``add``/``remove`` produce the whole udev sequence (child nodes, the
        sound card's late ``change``), so exactly one ``DeviceAdded`` or
        ``DeviceRemoved`` of ``kind`` comes out of :func:`classify`. Any other
        action re-sends the main device's event with that action.
        """
        for event_action, subsystem, properties, node in _realistic_events(action, kind):
            self._seqnum += 1
            full = {
                "ACTION": event_action,
                "SUBSYSTEM": subsystem,
                "SEQNUM": str(self._seqnum),
                **properties,
            }
            self.trigger(event_action, subsystem, full, node)

    def close(self) -> None:
        """Close the pipe; idempotent. The monitor cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _passes_filter(self, subsystem: object, properties: object) -> bool:
        if not self._filters:
            return True
        devtype = _Props(properties).get("DEVTYPE")
        return any(
            subsystem == want and (want_type is None or devtype == want_type)
            for want, want_type in self._filters
        )


# Realistic property sets, as `udevadm monitor --udev --property` shows them on a
# Raspberry Pi 4 (Raspberry Pi OS bookworm, systemd 252). Serial numbers are made up.

_PI4_USB2 = "/devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb1/1-1"
_PI4_USB3 = "/devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb2"

_Event = tuple[str, str, dict[str, str], str | None]


def _usb_ids(
    port: str, interface: str, vendor: tuple[str, str], model: tuple[str, str]
) -> dict[str, str]:
    (vendor_id, vendor_name), (model_id, model_name) = vendor, model
    return {
        "ID_BUS": "usb",
        "ID_VENDOR": vendor_name,
        "ID_VENDOR_ID": vendor_id,
        "ID_MODEL": model_name,
        "ID_MODEL_ID": model_id,
        "ID_SERIAL": f"{vendor_name}_{model_name}_SIM0001",
        "ID_SERIAL_SHORT": "SIM0001",
        "ID_USB_INTERFACE_NUM": interface,
        "ID_PATH": f"platform-fd500000.pcie-pci-0000:01:00.0-usb-0:{port}:1.{int(interface)}",
    }


def _camera_events(action: str) -> list[_Event]:
    base = f"{_PI4_USB2}/1-1.2/1-1.2:1.0/video4linux"
    ids = _usb_ids("1.2", "00", ("046d", "046d"), ("082d", "HD_Pro_Webcam_C920"))
    ids |= {
        "ID_USB_INTERFACES": ":0e0100:0e0200:010100:010200:",
        "ID_USB_DRIVER": "uvcvideo",
        "ID_V4L_VERSION": "2",
        "ID_V4L_PRODUCT": "HD Pro Webcam C920",
    }
    capture = ids | {
        "DEVPATH": f"{base}/video0",
        "DEVNAME": "/dev/video0",
        "MAJOR": "81",
        "MINOR": "0",
        "ID_V4L_CAPABILITIES": ":capture:",
    }
    metadata = ids | {
        "DEVPATH": f"{base}/video1",
        "DEVNAME": "/dev/video1",
        "MAJOR": "81",
        "MINOR": "1",
        "ID_V4L_CAPABILITIES": ":",
    }
    if action == _ADD:
        return [
            (_ADD, "video4linux", capture, "/dev/video0"),
            (_ADD, "video4linux", metadata, "/dev/video1"),
        ]
    if action == _REMOVE:
        return [
            (_REMOVE, "video4linux", metadata, "/dev/video1"),
            (_REMOVE, "video4linux", capture, "/dev/video0"),
        ]
    return [(action, "video4linux", capture, "/dev/video0")]


_AUDIO_MODELS: Mapping[DeviceKind, tuple[str, tuple[str, str], tuple[str, str], str]] = {
    # kind: (hub port, (vendor id, vendor), (product id, model), SOUND_FORM_FACTOR)
    DeviceKind.HEADSET: ("1.3", ("046d", "Logitech"), ("0a44", "Logitech_USB_Headset"), "headset"),
    DeviceKind.SPEAKER: (
        "1.4",
        ("0d8c", "C-Media_Electronics_Inc."),
        ("0014", "USB2.0_Speaker"),
        "speaker",
    ),
    DeviceKind.MICROPHONE: (
        "1.1",
        ("b58e", "Blue_Microphones"),
        ("9e84", "Yeti_Stereo_Microphone"),
        "microphone",
    ),
}


def _sound_events(action: str, kind: DeviceKind) -> list[_Event]:
    port, vendor, model, form_factor = _AUDIO_MODELS[kind]
    card_path = f"{_PI4_USB2}/1-{port}/1-{port}:1.0/sound/card3"
    ids = _usb_ids(port, "00", vendor, model) | {"ID_USB_DRIVER": "snd-usb-audio"}
    card_bare = {"DEVPATH": card_path}
    card_ready = card_bare | ids | {"SOUND_INITIALIZED": "1", "SOUND_FORM_FACTOR": form_factor}
    # 60-persistent-alsa.rules gives the control node USB ids too: only the
    # card-name check keeps it from counting as a second device.
    control = ids | {
        "DEVPATH": f"{card_path}/controlC3",
        "DEVNAME": "/dev/snd/controlC3",
        "MAJOR": "116",
        "MINOR": "11",
    }
    if action == _ADD:
        return [
            (_ADD, "sound", card_bare, None),
            (_ADD, "sound", control, "/dev/snd/controlC3"),
            (_CHANGE, "sound", card_ready, None),  # from 78-sound-card.rules
        ]
    if action == _REMOVE:
        return [
            (_REMOVE, "sound", control, "/dev/snd/controlC3"),
            (_REMOVE, "sound", card_ready, None),
        ]
    return [(action, "sound", card_ready, None)]


def _storage_events(action: str) -> list[_Event]:
    disk_path = f"{_PI4_USB3}/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda"
    ids = _usb_ids("1", "00", ("0781", "SanDisk"), ("5567", "Cruzer_Blade")) | {
        "ID_USB_DRIVER": "usb-storage",
        "ID_TYPE": "disk",
        "ID_PART_TABLE_TYPE": "dos",
        "ID_PART_TABLE_UUID": "5a1c0de0",
    }
    disk = ids | {
        "DEVPATH": disk_path,
        "DEVNAME": "/dev/sda",
        "DEVTYPE": "disk",
        "MAJOR": "8",
        "MINOR": "0",
    }
    partition = ids | {
        "DEVPATH": f"{disk_path}/sda1",
        "DEVNAME": "/dev/sda1",
        "DEVTYPE": "partition",
        "MAJOR": "8",
        "MINOR": "1",
        "PARTN": "1",
        "ID_FS_TYPE": "vfat",
        "ID_FS_USAGE": "filesystem",
        "ID_FS_VERSION": "FAT32",
        "ID_FS_LABEL": "KIOSKUSB",
        "ID_FS_UUID": "1234-ABCD",
        "ID_PART_ENTRY_NUMBER": "1",
        "ID_PART_ENTRY_TYPE": "0xc",
    }
    if action == _ADD:
        return [(_ADD, "block", disk, "/dev/sda"), (_ADD, "block", partition, "/dev/sda1")]
    if action == _REMOVE:
        return [(_REMOVE, "block", partition, "/dev/sda1"), (_REMOVE, "block", disk, "/dev/sda")]
    return [(action, "block", partition, "/dev/sda1")]


def _realistic_events(action: str, kind: DeviceKind) -> list[_Event]:
    if kind is DeviceKind.CAMERA:
        return _camera_events(action)
    if kind is DeviceKind.STORAGE:
        return _storage_events(action)
    return _sound_events(action, kind)
