"""A full disk under the state directory: events still go out, the status says so, nothing dies.

A real full file system: a 3 MB tmpfs mounted under the test's directory (needs root; skipped
with the reason otherwise), filled to the last byte while the gateway runs.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.harness import Subscriber
from support.servers import Mosquitto

from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.config import parse_config
from ingest.outputs.spool import Priority, Spool, SpoolFullError
from ingest.stream.runner import Gateway
from ingest.stream.session import Output


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system says ENOSPC."""
    path = directory / "filler"
    with open(path, "wb", buffering=0) as fh:
        block = b"\0" * 4096
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:
                fh.write(b"\0")
        except OSError:
            pass
    return path


def test_spool_on_a_full_disk_keeps_clinical_records_and_the_eviction_order(small_fs: Path) -> None:
    with Spool(small_fs / "spool", quota_bytes=64 << 20, segment_bytes=64 << 10) as strict:
        filler = fill(small_fs)
        with pytest.raises(SpoolFullError):  # without the fallback: the documented error
            for _ in range(100):
                strict.append("s", Priority.RAW, b"x" * 1000)
        filler.unlink()
    with Spool(small_fs / "spool2", quota_bytes=64 << 20, segment_bytes=64 << 10, memory_fallback=50) as sp:
        pad = b" " + b"e" * 3000  # clinical records big enough to need new pages of the file system
        for i in range(20):
            sp.append("s", Priority.CLINICAL, b"event %d" % i + pad)
        for _ in range(200):
            sp.append("s", Priority.RAW, b"r" * 1000)
        fill(small_fs)
        # Clinical appends on a full disk: raw segments are evicted to make real room first ...
        for i in range(20, 60):
            assert sp.append("s", Priority.CLINICAL, b"event %d" % i + pad)
        st = sp.stats()
        assert st.disk_full is not None and "no space left" in st.disk_full
        assert st.evicted_records[Priority.RAW] > 0 and st.evicted_records[Priority.CLINICAL] == 0
        # ... then (all raw gone), clinical records are held in memory, bulk ones dropped and counted.
        for _ in range(300):
            sp.append("s", Priority.RAW, b"r" * 1000)
        assert sp.stats().disk_full_dropped[Priority.RAW] > 0  # nothing below raw to evict
        n = 0
        while sp.append("s", Priority.CLINICAL, b"late %d" % n + pad) and n < 200:
            n += 1
        st = sp.stats()
        assert 0 < st.memory_records <= 50 and st.disk_full_dropped[Priority.CLINICAL] >= 1
        assert st.evicted_records[Priority.CLINICAL] == 0
        # Every accepted clinical record is delivered, in order, whether on disk or in memory.
        got: list[bytes] = []
        while recs := sp.peek("s", 1000, 1 << 30):
            got += [r.payload for r in recs if r.priority == Priority.CLINICAL]
            sp.ack("s", recs)
        assert got[:60] == [b"event %d" % i + pad for i in range(60)]
        assert got[60:] == [b"late %d" % i + pad for i in range(n)]
        assert sp.stats().memory_records == 0
        sp.sync()  # must not raise on the full disk


def _config(state: Path, port_path: str, mqtt_port: int) -> Any:
    return parse_config(
        {
            "gateway": {"site": "fd", "patient": "p-0001", "state_dir": str(state), "stale_after_s": 3.0},
            "devices": [{"id": "dev-a", "port": port_path}],
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
            "local": {"enabled": True},
            "spool": {"quota_mb": 64, "fsync": "batch"},
        },
        "<test>",
    )


def test_gateway_on_a_full_disk_still_delivers_events(
    tmp_path: Path, small_fs: Path, mosquitto: Mosquitto
) -> None:
    async def main() -> None:
        rec = synthesize(builtin_scenario("e2e_short"))
        device = SimDevice(SignalSource.from_recording(rec), device_id="fd", seed=1)
        outputs: list[Output] = []
        async with Subscriber(mosquitto.port, client_id="fd-observer") as obs:
            async with PtyServer(device) as server:
                cfg = _config(small_fs / "state", server.path, mosquitto.port)
                async with Gateway(cfg, observers=[lambda _d, o: outputs.append(o)]) as gw:
                    gw.start()
                    runner = gw.devices["dev-a"]
                    await asyncio.sleep(1.0)
                    filler = fill(small_fs)
                    for _ in range(80):  # the next series flush meets the full disk
                        if gw.spool.stats().disk_full is not None:
                            break
                        await asyncio.sleep(0.1)
                    status, _ = gw.status_payload(runner)
                    assert status["spool"]["disk_full"], status["spool"]
                    assert status["monitoring"] is True  # detection goes on
                    await asyncio.sleep(max(0.0, 11.8 - server.device_time()))
                    assert runner.failures == 0 and runner.state == "online"
                    assert gw.spool.stats().disk_full is not None
                    os.unlink(filler)
                    for _ in range(40):  # recovers by itself once there is room again
                        if gw.spool.stats().disk_full is None:
                            break
                        await asyncio.sleep(0.1)
                    assert gw.spool.stats().disk_full is None
                    assert gw.status_payload(runner)[0]["spool"]["disk_full"] is None
                    await gw.drain(timeout_s=3.0)
                    await asyncio.sleep(0.5)
        events = [o.payload["id"] for o in outputs if o.kind == "event" and o.payload]
        assert len(events) == 3
        received = {p["id"] for t, p, _ in obs.decoded() if t.endswith("/events")}
        assert set(events) <= received  # every event reached the broker despite the full disk
        statuses = [p for t, p, _ in obs.decoded() if t.endswith("/status")]
        assert any(p["spool"].get("disk_full") for p in statuses)

    asyncio.run(main())


def test_append_never_spins_when_only_a_segment_header_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case the full tmpfs found under load: a new segment's 8-byte header still fits, its
    first record does not. Each append must give up after a bounded number of evictions."""
    import ingest.outputs.spool as spool_mod

    real = spool_mod._os_write

    def tiny_disk(fd: int, data: bytes | memoryview) -> int:
        if len(data) > len(spool_mod.MAGIC):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    with Spool(tmp_path / "sp", quota_bytes=64 << 20, segment_bytes=64 << 10, memory_fallback=5) as sp:
        for i in range(3):
            assert sp.append("s", Priority.BULK, b"b%d" % i)
        sp.ack("s", sp.peek("s", 10, 1 << 20))  # an acknowledged segment: room to free first
        monkeypatch.setattr(spool_mod, "_os_write", tiny_disk)
        results = [sp.append("s", Priority.BULK, b"x" * 100) for _ in range(20)]
        assert not any(results)  # dropped and counted, never a hang
        assert [sp.append("s", Priority.CLINICAL, b"e%d" % i) for i in range(7)] == [True] * 5 + [False] * 2
        st = sp.stats()
        assert st.memory_records == 5 and st.disk_full_dropped[Priority.BULK] == 20
