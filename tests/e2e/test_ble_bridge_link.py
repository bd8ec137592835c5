"""The BLE bridge's two ends in one process, over a real Unix socket: behaviour at the edges.

``firmware_sim.ble_bridge.BleBridgeServer`` (the simulator's end) and ``ingest.sources.blebridge``
(the gateway's bleak backend), driven through bleak's real front-end: the socket's mode and
lifetime, a dropped link reaching the disconnected callback, and garbage or silence from either
side giving one clear error within a bound, never a hang.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import struct
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from firmware_sim.ble import VirtualBle
from firmware_sim.ble_bridge import BleBridgeServer, BridgedPeripheral, BridgeSocketError
from firmware_sim.device import SignalSource
from firmware_sim.personalities import make_device
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.sources import blebridge
from ingest.sources.blebridge import bridge_backends
from ingest.wire.blebridge import BridgeDecoder, encode
from ingest.wire.kinds import decoder_for

ADDR = "C0:FF:EE:00:00:61"


def _mode(path: Path) -> int | None:
    """st_mode of ``path``, None when it does not exist (sync: these are instant local calls)."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _read(path: Path) -> str:
    return path.read_text()


@pytest.fixture
def sock() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="nsbl-"))  # short: a socket path holds 107 bytes
    yield d / "b.sock"
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


@pytest.fixture
async def myo(sock: Path) -> AsyncIterator[tuple[BridgedPeripheral, BleBridgeServer]]:
    rec = synthesize(builtin_scenario("e2e_short"))
    device = make_device("myo", SignalSource.from_recording(rec), device_id="m", seed=1)
    async with VirtualBle() as air, BleBridgeServer(air, sock) as server:
        p = air.add(BridgedPeripheral(device, address=ADDR))
        assert isinstance(p, BridgedPeripheral)
        yield p, server


async def test_scan_connect_notify_and_a_dropped_link(
    sock: Path, myo: tuple[BridgedPeripheral, BleBridgeServer]
) -> None:
    peripheral, server = myo
    st_mode = _mode(sock)
    assert stat.S_ISSOCK(st_mode) and stat.S_IMODE(st_mode) == 0o600, oct(st_mode)
    client_cls, scanner_cls = bridge_backends(str(sock))
    dev = await BleakScanner.find_device_by_address(ADDR, timeout=2.0, backend=scanner_cls)
    assert dev is not None and dev.name == "Myo"
    lost = asyncio.Event()
    got: list[bytes] = []
    dec = decoder_for("myo")
    prof = type(dec).ble_profile
    assert prof is not None
    async with BleakClient(dev, backend=client_cls, disconnected_callback=lambda _c: lost.set()) as c:
        assert c.mtu_size == peripheral.mtu
        for uuid in prof.notify_uuids:
            await c.start_notify(uuid, lambda _ch, data: got.append(bytes(data)))
        for w in dec.start_commands():
            await c.write_gatt_char(w.char_uuid or prof.command_uuid, w.data, response=True)
        async with asyncio.timeout(5):
            while len(got) < 20:  # noqa: ASYNC110  (notifications arrive from the socket reader)
                await asyncio.sleep(0.01)
        assert peripheral.connected
        peripheral.set_available(False)  # out of range: the central hears it as a disconnect
        async with asyncio.timeout(5):
            await lost.wait()
        assert not c.is_connected
        with pytest.raises(BleakError, match="Not connected"):
            await c.write_gatt_char(prof.command_uuid, b"\x00", response=True)
    peripheral.set_available(True)
    # EMG notifications (2 samples x 8 int8 channels) and IMU ones (10 x int16), nothing else
    assert {len(g) for g in got} == {16, 20}, sorted({len(g) for g in got})
    assert server.sessions_served >= 2  # one scan, one connection


async def test_socket_is_removed_at_exit_and_a_stale_one_replaced(sock: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))  # bound, never listening: a killed simulator's leftover
    stale.close()
    async with VirtualBle() as air:
        async with BleBridgeServer(air, sock):
            assert stat.S_ISSOCK(_mode(sock))
            with pytest.raises(BridgeSocketError, match="another simulator is listening"):
                async with BleBridgeServer(air, sock):
                    pass
        assert _mode(sock) is None
    _write(sock, "mine")
    with pytest.raises(BridgeSocketError, match="exists and is not a socket"):
        async with VirtualBle() as air, BleBridgeServer(air, sock):
            pass
    assert _read(sock) == "mine"


async def test_garbage_to_the_simulator_is_one_error_then_the_session_closes(
    sock: Path, myo: tuple[BridgedPeripheral, BleBridgeServer]
) -> None:
    _, server = myo
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(3):
        data = await reader.read()  # until the simulator closes
    writer.close()
    (msg,) = BridgeDecoder().feed(data)
    assert msg["op"] == "error" and msg["code"] == "protocol" and "is not 1.." in msg["message"]
    assert server.protocol_errors == 1
    # A request before hello, then a well-formed stream cut off: the same, and no hang.
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(encode({"op": "scan", "id": 1, "service_uuids": []}))
    async with asyncio.timeout(3):
        data = await reader.read()
    writer.close()
    (msg,) = BridgeDecoder().feed(data)
    assert msg["code"] == "protocol" and "scan before hello" in msg["message"]
    # And the simulator still serves a real central afterwards.
    _, scanner_cls = bridge_backends(str(sock))
    assert await BleakScanner.find_device_by_address(ADDR, timeout=2.0, backend=scanner_cls) is not None


class FakeSimulator:
    """A socket that answers every connection with ``answer`` (None: silence) and keeps it open."""

    def __init__(self, sock: Path, answer: bytes | None) -> None:
        self.sock, self.answer = sock, answer
        self.writers: list[asyncio.StreamWriter] = []
        self.sessions: list[asyncio.Task[None]] = []

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.sessions.append(task)
        self.writers.append(writer)
        if self.answer is not None:
            writer.write(self.answer)
        await reader.read()  # hold the connection until the client leaves
        writer.close()

    async def __aenter__(self) -> FakeSimulator:
        self.server = await asyncio.start_unix_server(self._session, path=str(self.sock))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for w in self.writers:
            w.close()
        await asyncio.wait_for(asyncio.gather(*self.sessions, return_exceptions=True), 2.0)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"\xff\xff\xff\xff", "length 4294967295 is not"),
        (struct.pack(">I", 40) + b'{"op": "hello", "version": 1', "no hello within"),  # cut short
        (encode({"op": "hello", "version": 99}), "speaks bridge version 99"),
        (None, "no hello within"),
    ],
)
async def test_garbage_or_silence_from_the_simulator_is_a_bleak_error_not_a_hang(
    sock: Path, monkeypatch: pytest.MonkeyPatch, answer: bytes | None, words: str
) -> None:
    monkeypatch.setattr(blebridge, "OPEN_TIMEOUT_S", 0.3)
    client_cls, scanner_cls = bridge_backends(str(sock))
    t0 = time.monotonic()
    async with FakeSimulator(sock, answer):
        with pytest.raises(BleakError, match=words):
            await BleakClient(ADDR, backend=client_cls).connect()
        with pytest.raises(BleakError, match=words):
            await BleakScanner.find_device_by_address(ADDR, timeout=2.0, backend=scanner_cls)
    assert time.monotonic() - t0 < 3.0


async def test_no_simulator_is_a_bleak_error_naming_the_socket(sock: Path) -> None:
    client_cls, _ = bridge_backends(str(sock))
    with pytest.raises(BleakError, match=rf"BLE bridge {sock}: cannot connect .*neurospasm sim --ble-socket"):
        await BleakClient(ADDR, backend=client_cls).connect()


async def test_the_simulator_going_away_is_a_disconnect(
    sock: Path, myo: tuple[BridgedPeripheral, BleBridgeServer]
) -> None:
    peripheral, server = myo
    client_cls, _ = bridge_backends(str(sock))
    lost = asyncio.Event()
    client = BleakClient(ADDR, backend=client_cls, disconnected_callback=lambda _c: lost.set())
    await client.connect()
    assert client.is_connected and peripheral.connected
    await server.__aexit__(None, None, None)  # the simulator stops: its sockets close
    async with asyncio.timeout(3):
        await lost.wait()
    assert not client.is_connected and not peripheral.connected
    assert _mode(sock) is None


async def test_neurospasm_devices_scans_through_the_bridge(
    sock: Path, myo: tuple[BridgedPeripheral, BleBridgeServer]
) -> None:
    """``neurospasm devices --ble-bridge PATH``: the simulator's devices, classified by kind."""
    from ingest.commands.devices import list_ble

    found, problem = await list_ble(0.3, backend=bridge_backends(str(sock))[1])
    assert problem is None
    assert [(d.where, d.kind) for d in found] == [(ADDR, "myo")]
    found, problem = await list_ble(0.3, backend=bridge_backends(str(sock) + ".none")[1])
    assert found == [] and problem is not None and f"{sock}.none: cannot connect" in problem


async def test_a_central_that_leaves_while_connecting_leaves_no_connection_behind(
    sock: Path, myo: tuple[BridgedPeripheral, BleBridgeServer]
) -> None:
    peripheral, server = myo
    peripheral.set_available(False)  # out of range: the connect waits
    reader, writer = await asyncio.open_unix_connection(str(sock))
    writer.write(encode({"op": "hello", "version": 1}))
    writer.write(encode({"op": "connect", "id": 1, "address": ADDR, "timeout_s": 10.0}))
    await writer.drain()
    hello = encode({"op": "hello", "version": 1})
    assert BridgeDecoder().feed(await reader.readexactly(len(hello))) == [{"op": "hello", "version": 1}]
    writer.close()  # the central gives up
    async with asyncio.timeout(3):
        while server._sessions:  # noqa: ASYNC110  (the session notices the end of its socket)
            await asyncio.sleep(0.01)
    peripheral.set_available(True)
    assert not peripheral.connected
    client_cls, _ = bridge_backends(str(sock))
    async with BleakClient(ADDR, backend=client_cls) as c:  # not "already connected"
        assert c.is_connected and peripheral.connected


async def test_a_central_that_stops_reading_costs_notifications_not_memory(
    sock: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from firmware_sim import ble_bridge

    monkeypatch.setattr(ble_bridge, "MAX_BACKLOG_BYTES", 20_000)
    rec = synthesize(builtin_scenario("e2e_short"))
    device = make_device("myo", SignalSource.from_recording(rec, loop=True), device_id="m", seed=1)
    async with VirtualBle() as air, BleBridgeServer(air, sock) as server:
        p = air.add(BridgedPeripheral(device, address=ADDR, speed=40.0))
        reader, writer = await asyncio.open_unix_connection(str(sock))
        dec = BridgeDecoder()
        for msg in (
            {"op": "hello", "version": 1},
            {"op": "connect", "id": 1, "address": ADDR, "timeout_s": 2.0},
        ):
            writer.write(encode(msg))
        replies: list[dict[str, object]] = []
        async with asyncio.timeout(3):
            while len(replies) < 2:
                replies += dec.feed(await reader.read(65536))
        table = replies[1]["services"]
        assert isinstance(table, list)
        handles = [c["handle"] for s in table for c in s["characteristics"] if "notify" in c["properties"]]
        cmd_handle = next(
            c["handle"] for s in table for c in s["characteristics"] if "write" in c["properties"]
        )
        for i, h in enumerate(handles):
            writer.write(encode({"op": "start_notify", "id": 10 + i, "handle": h}))
        for i, w in enumerate(decoder_for("myo").start_commands()):
            writer.write(
                encode(
                    {
                        "op": "write",
                        "id": 90 + i,
                        "handle": cmd_handle,
                        "data": w.data.hex(),
                        "response": True,
                    }
                )
            )
        # ... and never read again: the simulator's buffer stops at the cap, the rest is dropped.
        async with asyncio.timeout(10):
            while server.notifications_dropped == 0:  # noqa: ASYNC110  (the paced device produces)
                await asyncio.sleep(0.02)
        assert all(w.transport.get_write_buffer_size() <= 20_000 + 1024 for w in server._writers)
        assert p.connected
        writer.close()


async def test_a_scheduled_reboot_drops_the_link_and_the_truth_says_so(sock: Path) -> None:
    from firmware_sim.faults import FaultInjector
    from firmware_sim.scenario import FaultSpec

    scenario = builtin_scenario("e2e_short")
    scenario = scenario.model_copy(update={"faults": FaultSpec(reboot_at_s=[0.6], reboot_downtime_s=0.4)})
    rec = synthesize(scenario)
    device = make_device("myo", SignalSource.from_recording(rec), device_id="m", seed=1)
    injector = FaultInjector.from_scenario(scenario, rec, emg_rate_hz=200, acc_rate_hz=50)
    client_cls, _ = bridge_backends(str(sock))
    dec = decoder_for("myo")
    prof = type(dec).ble_profile
    assert prof is not None

    async def start(c: BleakClient, got: list[bytes]) -> None:
        for uuid in prof.notify_uuids:
            await c.start_notify(uuid, lambda _ch, data: got.append(bytes(data)))
        for w in dec.start_commands():
            await c.write_gatt_char(w.char_uuid or prof.command_uuid, w.data, response=True)

    async with VirtualBle() as air, BleBridgeServer(air, sock):
        p = air.add(BridgedPeripheral(device, injector=injector, address=ADDR, speed=2.0))
        assert isinstance(p, BridgedPeripheral)
        lost = asyncio.Event()
        first: list[bytes] = []
        async with BleakClient(ADDR, backend=client_cls, disconnected_callback=lambda _c: lost.set()) as c:
            await start(c, first)
            async with asyncio.timeout(5):
                await lost.wait()  # the reboot at 0.6 s (device time)
        assert first and [o.cause for o in p.outages] == ["reboot"]
        assert [r["kind"] for r in injector.truth] == ["reboot"]
        again: list[bytes] = []
        async with BleakClient(ADDR, backend=client_cls, timeout=3.0) as c:  # waits out the downtime
            assert p.device_time() >= 0.6 + 0.4
            await start(c, again)
            async with asyncio.timeout(5):
                while len(again) < 10:  # noqa: ASYNC110  (notifications arrive from the socket reader)
                    await asyncio.sleep(0.01)
            assert injector.link_up and injector.boot == 1  # up again at the first write
        # Leaving is a link loss too (the device streams on into the void): the truth records it.
        assert [r["kind"] for r in injector.truth] == ["reboot", "disconnect"] and not injector.link_up
        assert injector.truth[0]["duration_s"] == 0.4
