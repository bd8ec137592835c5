"""The BLE path through the real bleak front-end, with the simulator as a custom bleak backend.

Nothing is mocked between the gateway and bleak: ``BleTransport`` calls ``BleakScanner`` and
``BleakClient`` exactly as on a BlueZ gateway, and bleak delegates to ``SimBleakScanner`` /
``SimBleakClient``, behind which a ``SimDevice`` streams in (sped-up) real time. Faults are the
peripheral's hooks: a dropped link, out of range, a reboot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner

from firmware_sim.ble import SimBleakClient, SimBleakScanner, VirtualBle, VirtualPeripheral
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import Recording, synthesize
from ingest.config import parse_config
from ingest.sources import ble as ble_transport_module
from ingest.sources.base import TransportClosed, TransportError
from ingest.sources.ble import BleTransport
from ingest.stream.runner import Gateway
from ingest.stream.session import Output
from ingest.wire.protocol import (
    BLE_CMD_CHAR_UUID,
    BLE_DATA_CHAR_UUID,
    BLE_SERVICE_UUID,
    AccFrame,
    CmdFrame,
    Command,
    EmgFrame,
    Frame,
    InfoFrame,
    StreamDecoder,
    encode_frame,
    max_emg_samples_per_frame,
)

ADDR = "C0:FF:EE:00:00:01"
DECOY = "C0:FF:EE:00:00:99"
OTHER_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"  # heart rate: a neighbour's chest strap
START = encode_frame(CmdFrame(0, Command.START))


@pytest.fixture(scope="module")
def recording() -> Recording:
    return synthesize(builtin_scenario("e2e_short"))


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    BleTransport.forget()
    yield
    BleTransport.forget()


def wearable(
    rec: Recording, address: str = ADDR, *, name: str = "NS-BLE-1", speed: float = 1.0, rssi: int = -58,
    service_uuids: tuple[str, ...] = (BLE_SERVICE_UUID,),
) -> VirtualPeripheral:  # fmt: skip
    device = SimDevice(SignalSource.from_recording(rec), device_id=name.lower(), seed=hash(address) & 0xFFFF)
    return VirtualPeripheral(
        device, address=address, name=name, speed=speed, rssi=rssi, service_uuids=service_uuids
    )


def transport(**kw: object) -> BleTransport:
    args: dict[str, object] = {
        "name": "ble-1", "backend": SimBleakClient, "scanner_backend": SimBleakScanner,
        "scan_timeout_s": 1.0, "connect_timeout_s": 1.0,
    }  # fmt: skip
    args.update(kw)
    return BleTransport(**args)  # type: ignore[arg-type]


async def read_frames(
    t: BleTransport, until: Callable[[list[Frame]], bool], within_s: float = 5.0
) -> list[Frame]:
    """Read chunks until ``until(frames)``; every chunk must be exactly one delimited frame."""
    dec = StreamDecoder()
    frames: list[Frame] = []
    async with asyncio.timeout(within_s):
        while not until(frames):
            chunk = await t.read()
            assert chunk.data.endswith(b"\x00") and chunk.data.count(0) == 1, "one frame per notification"
            got = dec.feed(chunk.data)
            assert len(got) == 1
            frames.extend(got)
    assert dec.stats.bad_frames == 0
    return frames


def has_all_kinds(frames: list[Frame]) -> bool:
    return any(isinstance(f, EmgFrame) for f in frames) and any(isinstance(f, AccFrame) for f in frames)


# -- the simulator as seen by plain bleak ----------------------------------------------------
async def test_plain_bleak_scans_and_connects_to_the_virtual_wearable(recording: Recording) -> None:
    async with VirtualBle() as ble:
        ble.add(wearable(recording))
        ble.add(wearable(recording, DECOY, name="NS-BLE-9"))
        by_addr = await BleakScanner.find_device_by_address(
            ADDR.lower(), timeout=1.0, backend=SimBleakScanner
        )
        by_name = await BleakScanner.find_device_by_name("NS-BLE-9", timeout=1.0, backend=SimBleakScanner)
        assert by_addr is not None and by_addr.address == ADDR
        assert by_name is not None and by_name.address == DECOY
        async with BleakClient(by_addr, backend=SimBleakClient) as client:
            assert client.backend_id == "SimBleakClient"
            service = client.services.get_service(BLE_SERVICE_UUID)
            assert service is not None
            assert {c.uuid for c in service.characteristics} == {BLE_DATA_CHAR_UUID, BLE_CMD_CHAR_UUID}
            assert "notify" in client.services.get_characteristic(BLE_DATA_CHAR_UUID).properties  # type: ignore[union-attr]
            # Connected wearables stop advertising: a second central cannot find this one.
            assert (
                await BleakScanner.find_device_by_address(ADDR, timeout=0.2, backend=SimBleakScanner) is None
            )


async def test_plain_with_block_and_nesting(recording: Recording) -> None:
    with VirtualBle() as outer:
        outer.add(wearable(recording))
        with VirtualBle() as inner:  # the innermost radio is the one the backends hear
            inner.add(wearable(recording, DECOY, name="NS-BLE-9"))
            assert (
                await BleakScanner.find_device_by_address(ADDR, timeout=0.2, backend=SimBleakScanner) is None
            )
            assert await BleakScanner.find_device_by_name("NS-BLE-9", timeout=1.0, backend=SimBleakScanner)
        found = await BleakScanner.find_device_by_address(ADDR, timeout=1.0, backend=SimBleakScanner)
        assert found is not None and found.address == ADDR


async def test_no_active_radio_is_bluetooth_not_available() -> None:
    with pytest.raises(
        TransportError, match=r"scan for BLE device ble-1 \(address C0:FF:EE:00:00:01\) failed"
    ):
        async with transport(address=ADDR):
            pass


# -- finding the device -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"address": ADDR.lower()}, ADDR),
        ({"device_name": "NS-BLE-9"}, DECOY),
        ({"service_uuid": OTHER_SERVICE}, DECOY),
        ({"service_uuid": BLE_SERVICE_UUID, "device_name": "NS-BLE-1"}, ADDR),
    ],
    ids=["address", "name", "service", "service+name"],
)
async def test_scan_finds_the_right_peripheral(
    recording: Recording, criteria: dict[str, str], expected: str
) -> None:
    async with VirtualBle() as ble:
        ble.add(wearable(recording, rssi=-51))
        ble.add(wearable(recording, DECOY, name="NS-BLE-9", rssi=-77, service_uuids=(OTHER_SERVICE,)))
        async with transport(**criteria) as t:
            assert t.ble_device is not None and t.ble_device.address == expected
            assert t.rssi == (-51 if expected == ADDR else -77)
            assert t.mtu == 247
            assert ble.peripherals[expected].connected
            assert not ble.peripherals[ADDR if expected == DECOY else DECOY].connected
        assert not ble.peripherals[expected].connected  # released on exit


def test_a_transport_needs_something_to_look_for() -> None:
    with pytest.raises(TransportError, match="needs an address, a device_name or a service_uuid"):
        BleTransport(name="ble-x")


# -- streaming ------------------------------------------------------------------------------------
@pytest.mark.parametrize("retry_connector", [True, False], ids=["retry-connector", "plain-connect"])
async def test_start_then_frames_decode_info_first(recording: Recording, retry_connector: bool) -> None:
    if retry_connector:  # a dependency (pyproject): its absence must not quietly test the plain path twice
        assert ble_transport_module._brc is not None, "bleak-retry-connector is not installed"
    async with VirtualBle() as ble:
        p = ble.add(wearable(recording, speed=4.0))
        async with transport(address=ADDR, use_retry_connector=retry_connector) as t:
            # Idle until START, as the protocol requires.
            await asyncio.sleep(0.1)
            assert t._queue.empty() and p.stats.notifications_dropped == 0
            await t.write(START)
            frames = await read_frames(t, has_all_kinds)
        assert isinstance(frames[0], InfoFrame) and frames[0].boot_id == p.device.boot_id
        assert frames[0].channel_labels == tuple(recording.channel_labels)
        emg = [f for f in frames if isinstance(f, EmgFrame)]
        counters = [f.counter for f in emg]
        assert counters[0] == 0
        assert all(b == a + len(f.samples) for a, b, f in zip(counters, counters[1:], emg, strict=False))
        assert p.stats.writes == 1 and p.device.stats.commands == 1
        assert t.stats.chunks >= len(frames) and t.stats.dropped_chunks == 0


async def test_peripheral_disconnect_makes_read_raise_transport_closed(recording: Recording) -> None:
    async with VirtualBle() as ble:
        p = ble.add(wearable(recording, speed=4.0))
        t = transport(address=ADDR)
        async with t:
            await t.write(START)
            await read_frames(t, has_all_kinds)
            p.disconnect()
            with pytest.raises(
                TransportClosed, match=r"BLE device ble-1 \(address C0:FF:EE:00:00:01\) disconnected"
            ):
                async with asyncio.timeout(2.0):
                    while True:
                        await t.read()  # frames sent before the drop first, then the loss
            with pytest.raises(TransportClosed, match="not connected"):
                await t.write(START)
        assert t.stats.disconnects == 1
        # The device kept streaming into the void: the open outage counts what was lost.
        await asyncio.sleep(0.1)
        (outage,) = p.outages
        assert outage.cause == "peripheral" and outage.notifications_dropped > 0


async def test_closing_our_end_is_not_reported_as_a_loss(recording: Recording) -> None:
    async with VirtualBle() as ble:
        p = ble.add(wearable(recording))
        t = transport(address=ADDR)
        async with t:
            pass
        assert t.stats.disconnects == 0 and t._queue.empty()
        assert [o.cause for o in p.outages] == ["central"]


# -- out of range and escalation -------------------------------------------------------------------
async def test_out_of_range_open_fails_naming_the_device(recording: Recording) -> None:
    async with VirtualBle() as ble:
        p = ble.add(wearable(recording))
        p.set_available(False)
        t0 = time.monotonic()
        with pytest.raises(
            TransportError, match=r"BLE device ble-1 \(address C0:FF:EE:00:00:01\) not found in a 0.3 s scan"
        ):
            async with transport(address=ADDR, scan_timeout_s=0.3):
                pass
        assert time.monotonic() - t0 >= 0.3  # it did listen for the whole scan window
        assert BleTransport._memory[transport(address=ADDR).key].failures == 1


async def test_escalation_cached_device_then_rescan(recording: Recording) -> None:
    async with VirtualBle() as ble:
        p = ble.add(wearable(recording))
        async with transport(address=ADDR) as t:
            pass
        mem = t.memory
        assert mem.device is not None and mem.failures == 0
        scans = p.stats.scans_answered
        p.set_available(False)
        # 1st failure: the cached BLEDevice is used (no scan), the connect times out.
        with pytest.raises(
            TransportError,
            match=r"cannot connect to BLE device ble-1 .* at C0:FF:EE:00:00:01: no connection within 0.2 s",
        ):
            async with transport(address=ADDR, connect_timeout_s=0.2):
                pass
        assert mem.failures == 1 and mem.device is not None
        # 2nd failure reaches rescan_after_failures: the cached device is forgotten...
        with pytest.raises(TransportError, match="no connection within"):
            async with transport(address=ADDR, connect_timeout_s=0.2):
                pass
        assert mem.failures == 2 and mem.device is None
        # ...so the 3rd attempt scans, and a scan does not find a device out of range.
        with pytest.raises(TransportError, match=r"not found in a 0\.2 s scan"):
            async with transport(address=ADDR, scan_timeout_s=0.2):
                pass
        assert mem.failures == 3 and p.stats.scans_answered == scans
        p.set_available(True)
        async with transport(address=ADDR) as t:
            assert t.ble_device is not None
        assert mem.failures == 0 and p.stats.scans_answered > scans


async def test_connect_waits_for_a_peripheral_coming_back_into_range(recording: Recording) -> None:
    async with VirtualBle() as ble:
        p = ble.add(wearable(recording))
        async with transport(address=ADDR):
            pass
        p.disconnect(unavailable_for_s=0.3)
        assert not p.available
        t0 = time.monotonic()
        async with transport(address=ADDR, connect_timeout_s=2.0) as t:
            assert time.monotonic() - t0 >= 0.25
            assert t.ble_device is not None and p.connected


async def test_reboot_drops_the_link_and_restarts_counters(recording: Recording) -> None:
    async with VirtualBle() as ble:
        p = ble.add(wearable(recording, speed=4.0))
        async with transport(address=ADDR) as t:
            await t.write(START)
            before = await read_frames(t, lambda fs: sum(isinstance(f, EmgFrame) for f in fs) >= 5)
            p.reboot()
            with pytest.raises(TransportClosed):
                async with asyncio.timeout(2.0):
                    while True:
                        await t.read()
        assert p.outages[-1].cause == "reboot"
        async with transport(address=ADDR) as t:
            await t.write(START)
            after = await read_frames(t, has_all_kinds)
        boot0 = next(f for f in before if isinstance(f, InfoFrame)).boot_id
        info = after[0]
        assert isinstance(info, InfoFrame) and info.boot_id != boot0
        assert next(f for f in after if isinstance(f, EmgFrame)).counter == 0


# -- the whole gateway ------------------------------------------------------------------------------
SPEED = 2.0  # 2x: the virtual radio and the gateway share one process, which a parallel worker may crowd


async def test_gateway_over_ble_reconnects_and_records_the_gap(recording: Recording, tmp_path: Path) -> None:
    """e2e_short through the real Gateway over BLE, with a ~1 s (device time) link outage between
    the first and second spasm: the runner reconnects on its own, the gap is recorded with the
    samples the device produced meanwhile, and every spasm is reported exactly once."""
    assert len(recording.labels) == 3
    cfg = parse_config({
        "gateway": {"state_dir": str(tmp_path / "state"), "stale_after_s": 3.0},
        "devices": [{"id": "ble-1", "transport": "ble", "address": ADDR,
                     "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0}],
        "mqtt": {"enabled": False},
        "local": {"enabled": True},
    })  # fmt: skip
    outputs: list[Output] = []
    three_events = asyncio.Event()

    def observe(device: str, out: Output) -> None:
        assert device == "ble-1"
        if out.kind in ("onset", "event", "gap"):
            outputs.append(out)
        if len(events()) >= 3:
            three_events.set()

    def factory(dev: object) -> BleTransport:
        return BleTransport(
            name=dev.id, address=dev.address, backend=SimBleakClient,  # type: ignore[attr-defined]
            scanner_backend=SimBleakScanner, scan_timeout_s=2.0, connect_timeout_s=2.0,
        )  # fmt: skip

    def events() -> list[Output]:
        return [o for o in outputs if o.kind == "event"]

    async with VirtualBle() as ble, Gateway(cfg, transport_factory=factory, observers=[observe]) as gw:
        p = ble.add(wearable(recording, speed=SPEED))
        gw.start()
        runner = gw.devices["ble-1"]
        async with asyncio.timeout(60):  # a guard only: about 25 s on a loaded 2-core machine
            # Between the first spasm (2.0-3.0 s) and the second (5.5 s): down for 1 s of device time.
            await asyncio.sleep((3.6 - p.device_time()) / SPEED)
            assert runner.state == "online"
            p.disconnect(unavailable_for_s=1.0 / SPEED)
            await three_events.wait()
            # Play the scenario to its end: anything duplicated would show up by then.
            await asyncio.sleep(max(0.0, recording.duration_s + 1.0 - p.device_time()) / SPEED)
            assert p.device.finished
        assert runner.state == "online"

    (outage,) = p.outages[:1]
    assert outage.cause == "peripheral" and outage.emg_samples_lost is not None
    lost_s = outage.emg_samples_lost / recording.emg_rate_hz
    assert lost_s >= 0.95, lost_s  # the 1 s we were out of range, plus the reconnect
    # The outage fell between the spasms (else "3 events" would test nothing about duplicates).
    assert outage.t_lost > 3.0 and outage.t_resumed is not None
    assert outage.t_resumed < 5.4, f"outage ran into the second spasm (resumed at {outage.t_resumed:.2f} s)"
    assert runner.reconnects == 1

    gaps = [o.payload for o in outputs if o.kind == "gap" and o.payload is not None]
    assert sorted(g["domain"] for g in gaps) == ["acc", "emg"], gaps  # one outage, one gap per stream
    assert {g["cause"] for g in gaps} == {"disconnect"}, gaps
    emg_gaps = [g for g in gaps if g["domain"] == "emg"]
    gap = emg_gaps[0]
    assert gap["cause"] == "disconnect"
    frame = max_emg_samples_per_frame(len(recording.channel_labels))
    assert abs(gap["samples_missing"] - outage.emg_samples_lost) <= frame, (gap, outage)
    assert gap["duration_s"] > 0

    evs = events()
    assert len(evs) == 3 and len({e.payload["id"] for e in evs if e.payload}) == 3
    truth = sorted(label["onset_s"] for label in recording.labels)
    detected = sorted(e.source.onset_sample / recording.emg_rate_hz for e in evs)  # type: ignore[attr-defined]
    assert all(abs(d - t) < 0.25 for d, t in zip(detected, truth, strict=True)), (detected, truth)
    assert len([o for o in outputs if o.kind == "onset"]) == 3
