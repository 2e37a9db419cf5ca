"""Hot-plug classification and the udev watcher, on a real asyncio loop.

Property sets are what `udevadm monitor --udev --property` shows on a
Raspberry Pi 4 (bookworm, systemd 252); serial numbers are made up. The one
test that needs real udev is marked ``root``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardware.events import DeviceAdded, DeviceKind, DeviceRemoved, HardwareEvent
from hardware.udev import (
    UDEV_RUN_DIR,
    FakeDevice,
    FakeMonitor,
    HotplugWatcher,
    _classify,
    _present_devices,
    _udev_not_running,
    classify,
    present_devices,
)
from kiosk.errors import HardwareError

CAMERA, HEADSET, SPEAKER, MICROPHONE, STORAGE = (
    DeviceKind.CAMERA,
    DeviceKind.HEADSET,
    DeviceKind.SPEAKER,
    DeviceKind.MICROPHONE,
    DeviceKind.STORAGE,
)

# --- realistic property sets ----------------------------------------------------------

USB2 = "/devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb1/1-1"
USB3 = "/devices/platform/scb/fd500000.pcie/pci0000:00/0000:00:00.0/0000:01:00.0/usb2"


def usb(vendor: str, model: str, driver: str, **extra: str) -> dict[str, str]:
    return {
        "ID_BUS": "usb",
        "ID_VENDOR": vendor,
        "ID_MODEL": model,
        "ID_SERIAL": f"{vendor}_{model}_TEST01",
        "ID_USB_DRIVER": driver,
        **extra,
    }


WEBCAM = usb(
    "046d", "HD_Pro_Webcam_C920", "uvcvideo", ID_USB_INTERFACES=":0e0100:0e0200:010100:010200:"
)
WEBCAM_CAPTURE = WEBCAM | {
    "DEVPATH": f"{USB2}/1-1.2/1-1.2:1.0/video4linux/video0",
    "DEVNAME": "/dev/video0",
    "ID_V4L_VERSION": "2",
    "ID_V4L_PRODUCT": "HD Pro Webcam C920",
    "ID_V4L_CAPABILITIES": ":capture:",
}
WEBCAM_METADATA = WEBCAM_CAPTURE | {
    "DEVPATH": f"{USB2}/1-1.2/1-1.2:1.0/video4linux/video1",
    "DEVNAME": "/dev/video1",
    "ID_V4L_CAPABILITIES": ":",
}
WEBCAM_CARD = WEBCAM | {
    "DEVPATH": f"{USB2}/1-1.2/1-1.2:1.2/sound/card3",
    "ID_USB_DRIVER": "snd-usb-audio",
    "SOUND_INITIALIZED": "1",
    "SOUND_FORM_FACTOR": "webcam",
}
PI_CODEC = {  # bcm2835-codec: a memory-to-memory node, present on every Pi
    "DEVPATH": "/devices/platform/soc/fe00b840.mailbox/bcm2835-codec/video4linux/video10",
    "DEVNAME": "/dev/video10",
    "ID_V4L_PRODUCT": "bcm2835-codec-decode",
    "ID_V4L_CAPABILITIES": ":",
    "ID_PATH": "platform-bcm2835-codec",
}
PI_ISP_OUTPUT = PI_CODEC | {  # bcm2835-isp output: a capture node with no camera behind it
    "DEVPATH": "/devices/platform/soc/fe00b840.mailbox/bcm2835-isp/video4linux/video14",
    "DEVNAME": "/dev/video14",
    "ID_V4L_PRODUCT": "bcm2835-isp-capture0",
    "ID_V4L_CAPABILITIES": ":capture:",
}
PI_CAMERA_UNICAM = {  # a CSI camera module: found through libcamera, not hot-plug
    "DEVPATH": "/devices/platform/soc/fe801000.csi/video4linux/video0",
    "DEVNAME": "/dev/video0",
    "ID_V4L_PRODUCT": "unicam",
    "ID_V4L_CAPABILITIES": ":capture:",
    "ID_PATH": "platform-fe801000.csi",
}

HEADSET_CARD_PATH = f"{USB2}/1-1.3/1-1.3:1.0/sound/card3"
HEADSET_IDS = usb("Logitech", "Logitech_USB_Headset", "snd-usb-audio")
HEADSET_CARD_AT_ADD = {"DEVPATH": HEADSET_CARD_PATH}  # 78-sound-card.rules skips 'add'
HEADSET_CONTROL = HEADSET_IDS | {  # 60-persistent-alsa.rules imports usb_id here
    "DEVPATH": f"{HEADSET_CARD_PATH}/controlC3",
    "DEVNAME": "/dev/snd/controlC3",
}
HEADSET_CARD = HEADSET_IDS | {
    "DEVPATH": HEADSET_CARD_PATH,
    "SOUND_INITIALIZED": "1",
    "SOUND_FORM_FACTOR": "headset",
}
SPEAKERPHONE_CARD = usb("C-Media", "USB_Speakerphone", "snd-usb-audio") | {
    "DEVPATH": f"{USB2}/1-1.4/1-1.4:1.0/sound/card3",
    "SOUND_INITIALIZED": "1",
    "SOUND_FORM_FACTOR": "speaker",  # 78-sound-card.rules: model matches *[Ss]peaker*
}
JABRA_SPEAK_CARD = usb("0b0e", "Jabra_SPEAK_510_USB", "snd-usb-audio") | {
    "DEVPATH": f"{USB2}/1-1.4/1-1.4:1.0/sound/card3",
    "SOUND_INITIALIZED": "1",  # no form factor: "SPEAK" is not "Speaker"
}
MICROPHONE_CARD = usb("Blue_Microphones", "Yeti_Stereo_Microphone", "snd-usb-audio") | {
    "DEVPATH": f"{USB2}/1-1.1/1-1.1:1.0/sound/card3",
    "SOUND_INITIALIZED": "1",
    "SOUND_FORM_FACTOR": "microphone",
}
HEADPHONE_CARD = HEADSET_CARD | {"SOUND_FORM_FACTOR": "headphone"}
USB_MODEM_CARD = HEADSET_CARD | {"SOUND_CLASS": "modem"}
HDMI_CARD = {
    "DEVPATH": "/devices/platform/soc/fef00700.hdmi/sound/card1",
    "SOUND_INITIALIZED": "1",
    "SOUND_FORM_FACTOR": "internal",  # platform device: 78-sound-card.rules says internal
}
PI_JACK_CARD = HDMI_CARD | {"DEVPATH": "/devices/platform/soc/soc:audio/bcm2835_audio/sound/card0"}

STICK = usb("SanDisk", "Cruzer_Blade", "usb-storage", ID_PART_TABLE_TYPE="dos")
STICK_DISK = STICK | {
    "DEVPATH": f"{USB3}/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda",
    "DEVNAME": "/dev/sda",
    "DEVTYPE": "disk",
}
STICK_PARTITION = STICK | {
    "DEVPATH": f"{STICK_DISK['DEVPATH']}/sda1",
    "DEVNAME": "/dev/sda1",
    "DEVTYPE": "partition",
    "ID_FS_TYPE": "vfat",
    "ID_FS_USAGE": "filesystem",
    "ID_FS_LABEL": "KIOSKUSB",
}
SUPERFLOPPY = STICK_DISK | {"ID_FS_TYPE": "exfat", "ID_FS_USAGE": "filesystem"}
LUKS_PARTITION = STICK_PARTITION | {"ID_FS_TYPE": "crypto_LUKS", "ID_FS_USAGE": "crypto"}
SWAP_PARTITION = STICK_PARTITION | {"ID_FS_TYPE": "swap", "ID_FS_USAGE": "other"}
USB_SSD_PARTITION = STICK_PARTITION | {"ID_BUS": "ata", "ID_USB_DRIVER": "uas"}
SD_CARD_ROOT = {
    "DEVPATH": "/devices/platform/emmc2bus/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa"
    "/block/mmcblk0/mmcblk0p2",
    "DEVNAME": "/dev/mmcblk0p2",
    "DEVTYPE": "partition",
    "ID_FS_TYPE": "ext4",
    "ID_FS_USAGE": "filesystem",
    "ID_PATH": "platform-fe340000.mmc",
}
LOOP_EXT4 = {
    "DEVPATH": "/devices/virtual/block/loop0",
    "DEVNAME": "/dev/loop0",
    "DEVTYPE": "disk",
    "ID_FS_TYPE": "ext4",
    "ID_FS_USAGE": "filesystem",
}

A, R = DeviceAdded, DeviceRemoved

CLASSIFICATION_TABLE: list[tuple[str, str, str, dict[str, str], str | None, object]] = [
    # (case, action, subsystem, properties, device node, expected)
    ("webcam capture node", "add", "video4linux", WEBCAM_CAPTURE, "/dev/video0", A(CAMERA)),
    ("webcam capture node gone", "remove", "video4linux", WEBCAM_CAPTURE, "/dev/video0", R(CAMERA)),
    ("webcam metadata node", "add", "video4linux", WEBCAM_METADATA, "/dev/video1", None),
    ("webcam re-triggered", "change", "video4linux", WEBCAM_CAPTURE, "/dev/video0", None),
    ("webcam driver bound", "bind", "video4linux", WEBCAM_CAPTURE, "/dev/video0", None),
    ("webcam's microphone", "change", "sound", WEBCAM_CARD, None, A(MICROPHONE)),
    ("Pi codec node", "add", "video4linux", PI_CODEC, "/dev/video10", None),
    ("Pi ISP capture node", "add", "video4linux", PI_ISP_OUTPUT, "/dev/video14", None),
    ("Pi camera module (libcamera)", "add", "video4linux", PI_CAMERA_UNICAM, "/dev/video0", None),
    ("headset card announced", "add", "sound", HEADSET_CARD_AT_ADD, None, None),
    ("headset control node", "add", "sound", HEADSET_CONTROL, "/dev/snd/controlC3", None),
    ("headset card ready", "change", "sound", HEADSET_CARD, None, A(HEADSET)),
    ("headset in start-up scan", "add", "sound", HEADSET_CARD, None, A(HEADSET)),
    ("headset control gone", "remove", "sound", HEADSET_CONTROL, "/dev/snd/controlC3", None),
    ("headset card gone", "remove", "sound", HEADSET_CARD, None, R(HEADSET)),
    ("headphones", "change", "sound", HEADPHONE_CARD, None, A(HEADSET)),
    ("speakerphone named Speaker", "change", "sound", SPEAKERPHONE_CARD, None, A(SPEAKER)),
    ("speakerphone named SPEAK", "change", "sound", JABRA_SPEAK_CARD, None, A(HEADSET)),
    ("USB microphone", "change", "sound", MICROPHONE_CARD, None, A(MICROPHONE)),
    ("USB modem", "change", "sound", USB_MODEM_CARD, None, None),
    ("HDMI audio", "change", "sound", HDMI_CARD, None, None),
    ("Pi headphone jack", "add", "sound", PI_JACK_CARD, None, None),
    ("USB stick partition", "add", "block", STICK_PARTITION, "/dev/sda1", A(STORAGE)),
    ("USB stick partition gone", "remove", "block", STICK_PARTITION, "/dev/sda1", R(STORAGE)),
    ("USB stick partition table", "add", "block", STICK_DISK, "/dev/sda", None),
    ("USB stick with no partitions", "add", "block", SUPERFLOPPY, "/dev/sda", A(STORAGE)),
    ("USB stick re-read", "change", "block", STICK_PARTITION, "/dev/sda1", None),
    ("encrypted USB partition", "add", "block", LUKS_PARTITION, "/dev/sda1", None),
    ("USB swap partition", "add", "block", SWAP_PARTITION, "/dev/sda1", None),
    ("SSD in a USB enclosure", "add", "block", USB_SSD_PARTITION, "/dev/sda1", A(STORAGE)),
    ("the Pi's SD card", "add", "block", SD_CARD_ROOT, "/dev/mmcblk0p2", None),
    ("loop device", "change", "block", LOOP_EXT4, "/dev/loop0", None),
    ("loop device added", "add", "block", LOOP_EXT4, "/dev/loop0", None),
    ("a USB hub", "add", "usb", usb("05e3", "USB2.0_Hub", "hub"), "/dev/bus/usb/001/002", None),
]


@pytest.mark.parametrize(
    ("action", "subsystem", "properties", "node", "expected"),
    [row[1:] for row in CLASSIFICATION_TABLE],
    ids=[row[0] for row in CLASSIFICATION_TABLE],
)
def test_classification_table(
    action: str, subsystem: str, properties: dict[str, str], node: str | None, expected: object
) -> None:
    assert classify(action, subsystem, properties, node) == expected


def test_sound_card_without_devpath_is_told_from_children_by_its_missing_node() -> None:
    props = {"ID_BUS": "usb", "SOUND_INITIALIZED": "1"}
    assert classify("change", "sound", props, None) == A(HEADSET)
    assert classify("change", "sound", props, "/dev/snd/pcmC3D0p") is None


def test_udev_values_from_libudev_as_bytes_are_read() -> None:
    props = {key: value.encode() for key, value in STICK_PARTITION.items()}
    assert classify(b"add", b"block", props, b"/dev/sda1") == A(STORAGE)


# --- classify never raises ------------------------------------------------------------


class RaisingMapping(dict[str, object]):
    """Properties that fail on every read, like a pyudev device that vanished."""

    def __getitem__(self, key: str) -> object:
        raise OSError("resident-secret-value")

    def get(self, key: str, default: object = None) -> object:
        raise OSError("resident-secret-value")


class HostileClass:
    """An object that raises even when ``isinstance`` looks at it."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("hostile")


class HostileStr(str):
    def __contains__(self, item: object) -> bool:
        raise RuntimeError("hostile")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile")

    __hash__ = str.__hash__

    def rpartition(self, sep: str) -> tuple[str, str, str]:
        raise RuntimeError("hostile")


HOSTILE_INPUTS: list[tuple[object, object, object, object]] = [
    ("add", "block", RaisingMapping(), "/dev/sda1"),
    ("add", "sound", RaisingMapping(), None),
    (HostileClass(), "block", STICK_PARTITION, None),
    ("add", HostileClass(), STICK_PARTITION, None),
    ("add", "block", HostileClass(), None),
    ("add", "sound", {"SOUND_INITIALIZED": "1"}, HostileClass()),
    (HostileStr("add"), HostileStr("sound"), {HostileStr("DEVPATH"): HostileStr("x/card1")}, None),
    ("add", "block", {k: HostileStr(v) for k, v in STICK_PARTITION.items()}, None),
]


@pytest.mark.parametrize("event", HOSTILE_INPUTS)
def test_classify_survives_hostile_objects(event: tuple[object, object, object, object]) -> None:
    result = classify(*event)
    assert result is None or isinstance(result, DeviceAdded | DeviceRemoved)


def test_twin_unguarded_classify_breaks_on_a_hostile_object() -> None:
    """Twin of the test above: without classify's last-resort guard it raises."""
    with pytest.raises(RuntimeError, match="hostile"):
        _classify(HostileClass(), "block", STICK_PARTITION, None)


def test_a_broken_property_is_treated_as_missing_not_as_a_broken_event() -> None:
    class OneBadKey(dict[str, object]):
        def __getitem__(self, key: str) -> object:
            if key == "ID_FS_USAGE":
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")
            return super().__getitem__(key)

        def get(self, key: str, default: object = None) -> object:
            try:
                return self[key]
            except KeyError:
                return default

    assert classify("add", "block", OneBadKey(STICK_PARTITION), "/dev/sda1") == A(STORAGE)


def test_huge_strings_are_classified_without_trouble() -> None:
    huge = "x" * 5_000_000
    started = time.perf_counter()
    assert classify(huge, "block", STICK_PARTITION, None) is None
    assert classify("add", huge, STICK_PARTITION, None) is None
    assert classify("add", "sound", HEADSET_CARD | {"DEVPATH": huge + "/card1"}, None) == A(HEADSET)
    assert classify("add", "sound", HEADSET_CARD | {"DEVPATH": "/card" + "1" * 5_000_000}, None)
    caps = ":" + "video_output:" * 400_000 + "capture:"
    assert classify("add", "video4linux", WEBCAM_CAPTURE | {"ID_V4L_CAPABILITIES": caps}, None)
    assert classify("add", "block", STICK_PARTITION | {"ID_FS_TYPE": huge.encode()}, None)
    assert time.perf_counter() - started < 5


RELEVANT_KEYS = [
    "DEVPATH",
    "DEVTYPE",
    "ID_BUS",
    "ID_USB_DRIVER",
    "ID_V4L_CAPABILITIES",
    "SOUND_FORM_FACTOR",
    "SOUND_INITIALIZED",
    "SOUND_CLASS",
    "ID_FS_TYPE",
    "ID_FS_USAGE",
]
INTERESTING_TEXT = [
    "",
    "1",
    ":",
    ":capture:",
    "usb",
    "pci",
    "disk",
    "partition",
    "vfat",
    "filesystem",
    "crypto",
    "headset",
    "Headset ",
    "speaker",
    "microphone",
    "webcam",
    "internal",
    "modem",
    "/devices/x/sound/card1",
    "/devices/x/sound/card1/controlC1",
    "/dev/video0",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=30)
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
interesting = st.sampled_from(INTERESTING_TEXT)
prop_values = interesting | interesting.map(str.encode) | anything
properties_st = (
    st.dictionaries(st.sampled_from(RELEVANT_KEYS) | st.text(max_size=10), prop_values, max_size=8)
    | st.dictionaries(anything.filter(lambda k: isinstance(k, int | str | bytes)), prop_values)
    | anything
)
actions_st = (
    st.sampled_from(["add", "remove", "change", "bind", "unbind", "move", "online"])
    | st.just(b"add")
    | anything
)
subsystems_st = st.sampled_from(["video4linux", "sound", "block", "usb", "input"]) | anything
nodes_st = st.none() | st.sampled_from(["/dev/video0", "/dev/snd/controlC1"]) | anything
events_st = st.tuples(actions_st, subsystems_st, properties_st, nodes_st)


def check_result(event: tuple[object, object, object, object], result: object) -> None:
    action, subsystem = event[0], event[1]
    assert result is None or isinstance(result, DeviceAdded | DeviceRemoved)
    if isinstance(result, DeviceRemoved):
        assert action in ("remove", b"remove")
    if isinstance(result, DeviceAdded):
        assert action in ("add", b"add", "change", b"change")
        if action in ("change", b"change"):
            assert result.kind in (HEADSET, SPEAKER, MICROPHONE)
            assert subsystem in ("sound", b"sound")


@given(events_st)
@settings(max_examples=400)
def test_classify_never_raises_for_arbitrary_events(
    event: tuple[object, object, object, object],
) -> None:
    check_result(event, classify(*event))


@given(events_st)
@settings(max_examples=400)
def test_input_checks_alone_handle_arbitrary_data(
    event: tuple[object, object, object, object],
) -> None:
    """Ordinary garbage (wrong types, bytes, nesting) needs no last-resort guard."""
    check_result(event, _classify(*event))


# --- the watcher on a real event loop -------------------------------------------------


class Booth:
    """A loop, a FakeMonitor and a watcher wired as the booth wires them."""

    def __init__(
        self,
        watcher_class: type[HotplugWatcher] = HotplugWatcher,
        monitor: FakeMonitor | None = None,
        emit: Callable[[HardwareEvent], None] | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self.monitor = monitor or FakeMonitor()
        self.emitted: list[HardwareEvent] = []
        self.watcher = watcher_class(self.monitor, emit or self.emitted.append, self.loop)

    def run_until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        """Run the loop (yielding, not sleeping) until ``done()`` or fail."""

        async def wait() -> None:
            while not done():
                await asyncio.sleep(0)

        self.loop.run_until_complete(asyncio.wait_for(wait(), timeout))

    def drain(self) -> None:
        self.run_until(lambda: self.monitor.pending == 0)

    def close(self) -> None:
        self.watcher.stop()
        self.monitor.close()
        self.loop.close()


@contextmanager
def booth(
    watcher_class: type[HotplugWatcher] = HotplugWatcher,
    monitor: FakeMonitor | None = None,
    emit: Callable[[HardwareEvent], None] | None = None,
) -> Iterator[Booth]:
    b = Booth(watcher_class, monitor, emit)
    try:
        yield b
    finally:
        b.close()


class UnguardedWatcher(HotplugWatcher):
    """The watcher with its per-event protection removed: the twins use it."""

    _guard_events = False


def test_events_arrive_through_the_loops_reader() -> None:
    with booth() as b:
        b.watcher.start()
        assert b.monitor.started and b.watcher.running
        b.monitor.trigger_kind("add", CAMERA)
        assert b.emitted == []  # nothing happens until the loop sees the descriptor
        b.drain()
        assert b.emitted == [A(CAMERA)]


@pytest.mark.parametrize("kind", list(DeviceKind))
@pytest.mark.parametrize(("action", "expected"), [("add", DeviceAdded), ("remove", DeviceRemoved)])
def test_trigger_kind_makes_exactly_one_booth_event(
    kind: DeviceKind, action: str, expected: type[DeviceAdded | DeviceRemoved]
) -> None:
    with booth() as b:
        b.watcher.start()
        b.monitor.trigger_kind(action, kind)
        assert b.monitor.pending >= 2  # the realistic sequence, not one tidy event
        b.drain()
        assert b.emitted == [expected(kind)]


def test_stop_is_idempotent_and_start_resumes() -> None:
    with booth() as b:
        b.watcher.start()
        b.watcher.start()
        b.watcher.stop()
        b.watcher.stop()
        assert not b.watcher.running
        b.monitor.trigger_kind("add", STORAGE)
        b.loop.run_until_complete(asyncio.sleep(0))
        assert b.emitted == [] and b.monitor.pending == 2
        b.watcher.start()
        b.drain()
        assert b.emitted == [A(STORAGE)]


def test_an_event_storm_is_read_in_bounded_batches_and_all_arrive() -> None:
    with booth() as b:
        b.watcher.start()
        for _ in range(1000):
            b.monitor.trigger("add", "block", STICK_PARTITION, "/dev/sda1")
        b.loop.run_until_complete(asyncio.sleep(0))
        assert 0 < len(b.emitted) < 1000
        b.drain()
        assert b.emitted == [A(STORAGE)] * 1000


def test_start_failure_is_a_hardware_error() -> None:
    class DeadMonitor(FakeMonitor):
        def start(self) -> None:
            raise OSError(19, "No such device")

    loop = asyncio.new_event_loop()
    try:
        with DeadMonitor() as monitor:
            watcher = HotplugWatcher(monitor, lambda _event: None, loop)
            with pytest.raises(HardwareError, match="could not be started"):
                watcher.start()
            assert not watcher.running
    finally:
        loop.close()


class PropertiesRaise:
    action, subsystem, device_node = "add", "block", "/dev/sda1"

    @property
    def properties(self) -> object:
        raise OSError("resident-secret-value")


class ActionRaises:
    subsystem, properties, device_node = "block", STICK_PARTITION, None

    @property
    def action(self) -> str:
        raise UnicodeDecodeError("utf-8", b"resident-secret-value\xff", 21, 22, "bad")


MALFORMED_DEVICES = [
    PropertiesRaise(),
    ActionRaises(),
    SimpleNamespace(action="add"),  # no other attributes
    None.__class__,  # not a device at all
    FakeDevice("add", "block", RaisingMapping(), "/dev/sda1"),
    FakeDevice("add", "block", {"ID_BUS": b"usb", "DEVTYPE": None, "ID_FS_TYPE": 4}, None),
    FakeDevice(None, 17, [1, 2], {"nested": {}}),
]


def run_malformed_then_good(watcher_class: type[HotplugWatcher]) -> Booth:
    b = Booth(watcher_class)
    b.watcher.start()
    for device in MALFORMED_DEVICES:
        b.monitor.trigger_device(device)
    b.monitor.trigger_kind("add", STORAGE)
    b.drain()
    return b


def test_malformed_events_are_dropped_and_the_watcher_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="hardware.udev")
    b = run_malformed_then_good(HotplugWatcher)
    try:
        assert b.emitted == [A(STORAGE)]
        assert b.watcher.running
        assert b.loop_errors == []
        dropped = [r for r in caplog.records if "dropped a udev event" in r.getMessage()]
        assert len(dropped) == 4  # the three that raise on read + the non-device
        assert {r.name for r in dropped} == {"hardware.udev"}
        assert "resident-secret" not in caplog.text
        assert all(r.exc_info is None for r in dropped)
    finally:
        b.close()


def test_twin_without_the_guard_a_malformed_event_breaks_the_watcher() -> None:
    """Twin of the test above: the same events escape into the event loop."""
    b = run_malformed_then_good(UnguardedWatcher)
    try:
        assert b.loop_errors, "the unguarded watcher should have let an exception escape"
        assert isinstance(b.loop_errors[0]["exception"], OSError)
    finally:
        b.close()


class FlakyMonitor(FakeMonitor):
    """Fails the way a netlink socket does when udev outran it (ENOBUFS)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def poll(self, timeout: float | None = None) -> object | None:
        if self.failures:
            self.failures -= 1
            raise OSError(105, "No buffer space available")
        return super().poll(timeout)


def test_a_monitor_read_failure_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    with booth(monitor=FlakyMonitor(failures=1)) as b:
        b.watcher.start()
        b.monitor.trigger_kind("add", HEADSET)
        b.drain()
        assert b.emitted == [A(HEADSET)]
        assert b.watcher.running and b.loop_errors == []
        assert "udev monitor read failed (OSError)" in caplog.text


def test_twin_without_the_guard_a_monitor_read_failure_escapes() -> None:
    with booth(UnguardedWatcher, monitor=FlakyMonitor(failures=1)) as b:
        b.watcher.start()
        b.monitor.trigger_kind("add", HEADSET)
        b.drain()
        assert [type(error["exception"]) for error in b.loop_errors] == [OSError]


def test_a_monitor_that_keeps_failing_stops_the_watcher_instead_of_spinning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = FlakyMonitor(failures=10**9)
    with booth(monitor=monitor) as b:
        b.watcher.start()
        monitor.trigger_kind("add", CAMERA)
        b.run_until(lambda: not b.watcher.running)
        assert monitor.failures == 10**9 - 10
        assert "hot-plug detection stopped" in caplog.text


def test_an_emit_failure_loses_one_event_not_the_watcher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered: list[HardwareEvent] = []

    def emit(event: HardwareEvent) -> None:
        delivered.append(event)
        if event == A(CAMERA):
            raise asyncio.QueueFull

    with booth(emit=emit) as b:
        b.watcher.start()
        b.monitor.trigger_kind("add", CAMERA)
        b.monitor.trigger_kind("add", MICROPHONE)
        b.drain()
        assert delivered == [A(CAMERA), A(MICROPHONE)]
        assert b.loop_errors == []
        assert "hot-plug DeviceAdded could not be delivered" in caplog.text


def test_twin_without_the_guard_an_emit_failure_escapes() -> None:
    def emit(event: HardwareEvent) -> None:
        raise asyncio.QueueFull

    with booth(UnguardedWatcher, emit=emit) as b:
        b.watcher.start()
        b.monitor.trigger_kind("add", CAMERA)
        b.drain()
        assert [type(error["exception"]) for error in b.loop_errors] == [asyncio.QueueFull]


hostile_devices_st = st.sampled_from(MALFORMED_DEVICES[:5])
stream_st = st.lists(
    events_st.map(lambda event: ("event", event)) | hostile_devices_st.map(lambda d: ("device", d)),
    max_size=12,
)


@given(stream_st)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_event_streams_never_stop_the_watcher(
    stream: list[tuple[str, Any]],
) -> None:
    with booth() as b:
        b.watcher.start()
        expected: list[object] = []
        for what, item in stream:
            if what == "device":
                b.monitor.trigger_device(item)
                continue
            b.monitor.trigger(*item)
            result = classify(*item)
            if result is not None:
                expected.append(result)
        b.monitor.trigger_kind("add", STORAGE)
        b.drain()
        assert b.watcher.running
        assert b.loop_errors == []
        assert b.emitted == [*expected, A(STORAGE)]


# --- FakeMonitor on its own -----------------------------------------------------------


def test_fake_monitor_poll_and_filter_behave_like_pyudevs() -> None:
    with FakeMonitor() as monitor:
        assert monitor.poll(timeout=0) is None
        assert monitor.poll(timeout=0.001) is None
        monitor.filter_by("sound")
        monitor.filter_by("block", device_type="partition")
        assert monitor.trigger("add", "sound", HEADSET_CARD) is True
        assert monitor.trigger("add", "video4linux", WEBCAM_CAPTURE) is False
        assert monitor.trigger("add", "block", STICK_DISK) is False
        assert monitor.trigger("add", "block", STICK_PARTITION, "/dev/sda1") is True
        assert monitor.pending == 2
        first = monitor.poll()
        assert isinstance(first, FakeDevice) and first.subsystem == "sound"
        second = monitor.poll(timeout=0)
        assert isinstance(second, FakeDevice) and second.device_node == "/dev/sda1"
        assert monitor.poll(timeout=0) is None
    monitor.close()  # idempotent


def test_fake_monitor_events_carry_udev_bookkeeping() -> None:
    with FakeMonitor() as monitor:
        monitor.trigger_kind("remove", STORAGE)
        seqnums = []
        while (device := monitor.poll(timeout=0)) is not None:
            assert isinstance(device, FakeDevice) and isinstance(device.properties, dict)
            assert device.properties["ACTION"] == device.action == "remove"
            assert device.properties["SUBSYSTEM"] == "block"
            seqnums.append(int(device.properties["SEQNUM"]))
        assert seqnums == sorted(seqnums) and len(seqnums) == 2


def test_trigger_kind_with_other_actions_is_a_single_event() -> None:
    with booth() as b:
        b.watcher.start()
        for kind in DeviceKind:
            b.monitor.trigger_kind("bind", kind)
        assert b.monitor.pending == len(DeviceKind)
        b.drain()
        assert b.emitted == []
        b.monitor.trigger_kind("change", HEADSET)  # `udevadm trigger` on a sound card
        b.drain()
        assert b.emitted == [A(HEADSET)]


# --- start-up scan --------------------------------------------------------------------


class FakeContext:
    def __init__(self, devices: dict[str, list[object]], fail: bool = False) -> None:
        self.devices = devices
        self.fail = fail

    def list_devices(self, subsystem: str) -> list[object]:
        if self.fail:
            raise OSError("libudev.so.1: cannot open shared object file")
        return self.devices.get(subsystem, [])


def scanned(subsystem: str, properties: object, node: object = None) -> FakeDevice:
    return FakeDevice(None, subsystem, properties, node)  # listed devices have no action


SCAN: dict[str, list[object]] = {
    "video4linux": [
        scanned("video4linux", PI_CODEC, "/dev/video10"),
        scanned("video4linux", WEBCAM_CAPTURE, "/dev/video0"),
    ],
    "sound": [
        PropertiesRaise(),
        scanned("sound", HDMI_CARD),
        scanned("sound", HEADSET_CONTROL, "/dev/snd/controlC3"),
        scanned("sound", HEADSET_CARD),
    ],
    "block": [scanned("block", SD_CARD_ROOT, "/dev/mmcblk0p2")],
}


def test_present_devices_classifies_what_is_plugged_in(caplog: pytest.LogCaptureFixture) -> None:
    assert present_devices(FakeContext(SCAN)) == {CAMERA, HEADSET}
    assert "skipped a device in the udev scan: OSError" in caplog.text
    assert "resident-secret" not in caplog.text


def test_present_devices_without_udev_is_empty(caplog: pytest.LogCaptureFixture) -> None:
    assert present_devices(FakeContext(SCAN, fail=True)) == set()
    assert "udev scan failed (OSError)" in caplog.text


def test_twin_unguarded_scan_breaks_on_a_bad_device() -> None:
    with pytest.raises(OSError, match="resident-secret"):
        _present_devices(FakeContext(SCAN), guarded=False)
    with pytest.raises(OSError, match="libudev"):
        _present_devices(FakeContext(SCAN, fail=True), guarded=False)


def test_present_devices_on_this_machine_never_raises() -> None:
    found = present_devices()
    assert found <= set(DeviceKind)


# --- for_system without udev ----------------------------------------------------------


def test_for_system_without_udev_run_dir_is_a_clear_hardware_error(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(HardwareError) as error:
            HotplugWatcher.for_system(lambda _event: None, loop, run_dir=tmp_path / "udev")
    finally:
        loop.close()
    message = str(error.value)
    assert message.startswith("udev is not running (")
    assert "missing): hot-plug events will not arrive; start systemd-udevd" in message


def test_for_system_with_a_stale_control_socket_is_a_hardware_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as left_over:
        left_over.bind(str(tmp_path / "control"))  # bound, never listening: udevd gone
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(HardwareError, match="left over from a stopped udevd"):
            HotplugWatcher.for_system(lambda _event: None, loop, run_dir=tmp_path)
    finally:
        loop.close()


# --- real udev (root) -----------------------------------------------------------------

UDEVD = "/lib/systemd/systemd-udevd"
HOW_TO_RUN = "run as root: `.venv/bin/pytest -m root tests/hardware/test_udev.py`"


@pytest.fixture
def real_udev() -> Iterator[None]:
    """udevd running: the machine's own, or one this fixture starts and stops."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root to start udevd and attach a loop device; {HOW_TO_RUN}")
    missing = [
        tool
        for tool in (UDEVD, "losetup", "mkfs.ext4")
        if not (Path(tool).exists() if tool.startswith("/") else shutil.which(tool))
    ]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install udev util-linux e2fsprogs)")
    if _udev_not_running(UDEV_RUN_DIR) is None:
        yield  # someone else's udevd: use it, leave it alone
        return
    run_dir_existed = UDEV_RUN_DIR.exists()
    udevd = subprocess.Popen([UDEVD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while _udev_not_running(UDEV_RUN_DIR) is not None:
            if udevd.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"could not start {UDEVD} (exit status {udevd.poll()})")
            time.sleep(0.05)
        yield
    finally:
        udevd.terminate()
        try:
            udevd.wait(10)
        except subprocess.TimeoutExpired:
            udevd.kill()
            udevd.wait()
        if not run_dir_existed:
            shutil.rmtree(UDEV_RUN_DIR, ignore_errors=True)


@pytest.mark.root
def test_real_udev_block_event_reaches_the_watcher_and_is_not_storage(
    real_udev: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Loop devices are not USB: the raw event arrives, classification says no."""
    seen: list[tuple[str, str, dict[str, str], object]] = []

    class Recording(HotplugWatcher):
        def _handle_device(self, device: Any) -> None:
            properties = dict(device.properties)
            seen.append(
                (
                    device.action,
                    device.subsystem,
                    properties,
                    classify(device.action, device.subsystem, properties, device.device_node),
                )
            )
            super()._handle_device(device)

    image = tmp_path / "stick.img"
    subprocess.run(["truncate", "-s", "16M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "KIOSKUSB", str(image)], check=True)
    caplog.set_level(logging.WARNING, logger="hardware.udev")
    emitted: list[HardwareEvent] = []
    loop = asyncio.new_event_loop()
    watcher = Recording.for_system(emitted.append, loop)
    loop_device = ""
    try:
        watcher.start()
        loop_device = subprocess.run(
            ["losetup", "-f", "--show", str(image)], capture_output=True, text=True, check=True
        ).stdout.strip()

        def ext4_event() -> tuple[str, str, dict[str, str], object] | None:
            for event in seen:
                props = event[2]
                if props.get("DEVNAME") == loop_device and props.get("ID_FS_TYPE") == "ext4":
                    return event
            return None

        async def wait() -> None:
            while ext4_event() is None:
                await asyncio.sleep(0.01)

        loop.run_until_complete(asyncio.wait_for(wait(), 15))
    finally:
        watcher.stop()
        loop.close()
        if loop_device:
            subprocess.run(["losetup", "-d", loop_device], check=False)
    event = ext4_event()
    assert event is not None
    action, subsystem, properties, result = event
    assert (action, subsystem) == ("change", "block")
    assert result is None
    assert not [e for e in emitted if e == A(STORAGE)]
    assert not [r for r in caplog.records if r.name == "hardware.udev"]
    # The same real properties, had the disk been on USB, are a USB stick.
    assert classify("add", "block", properties | {"ID_BUS": "usb"}, loop_device) == A(STORAGE)
    assert present_devices() <= set(DeviceKind)
