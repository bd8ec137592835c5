"""Supervision: a device pipeline that fails inside is shown, gapped and restarted; devices the
detector cannot handle are refused with a reason; the systemd watchdog follows real progress."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.harness import Subscriber
from support.servers import Mosquitto, wait_until

from detectors.limits import stream_problem
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import builtin_scenario
from firmware_sim.signals import synthesize
from ingest.config import parse_config
from ingest.stream.runner import Gateway
from ingest.stream.session import DeviceSession, Output
from ingest.stream.watchdog import Notifier
from ingest.wire.protocol import EmgFrame, InfoFrame

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/ptmx"), reason="needs pseudo-terminals")


def _config(tmp: Path, port_path: str, mqtt_port: int | None, stale_after_s: float = 3.0) -> Any:
    return parse_config(
        {
            "gateway": {"site": "sv", "patient": "p-0001", "state_dir": str(tmp / "state"),
                        "stale_after_s": stale_after_s},
            "devices": [{"id": "dev-a", "port": port_path, "reconnect_initial_s": 0.05,
                         "reconnect_max_s": 0.2}],
            "mqtt": {"enabled": mqtt_port is not None, "host": "127.0.0.1", "port": mqtt_port or 1883},
            "local": {"enabled": True},
            "spool": {"quota_mb": 64, "fsync": "never"},
        },
        "<test>",
    )  # fmt: skip


async def _wait(cond: Any, within: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > within:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def test_detector_failure_is_shown_gapped_and_restarted(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def main() -> None:
        rec = synthesize(builtin_scenario("e2e_short"))
        device = SimDevice(SignalSource.from_recording(rec), device_id="sv", seed=1)
        outputs: list[Output] = []
        topic = "neurospasm/v1/+/+/dev-a/#"
        async with Subscriber(mosquitto.port, client_id="sv-observer", topic=topic) as obs:
            async with PtyServer(device) as server:
                cfg = _config(tmp_path, server.path, mosquitto.port)
                async with Gateway(cfg, observers=[lambda _d, o: outputs.append(o)]) as gw:
                    gw.start()
                    runner = gw.devices["dev-a"]
                    await _wait(lambda: any(o.kind == "event" for o in outputs), 8, "the first event")
                    assert runner.monitoring
                    # The fault: the detector raises from inside on its next block.
                    detector = runner.session.detector
                    assert detector is not None

                    def boom(*_a: Any, **_k: Any) -> Any:
                        raise RuntimeError("injected detector fault")

                    detector.feed_emg = boom  # type: ignore[method-assign]
                    took = await _wait(lambda: not runner.monitoring, 2.0, "monitoring false")
                    assert took < 2.0
                    print(f"monitoring false {took * 1000:.0f} ms after the injected fault")
                    status, _ = gw.status_payload(runner)
                    assert status["monitoring"] is False and "injected detector fault" in status["reason"]
                    # ... and on MQTT, retained, within 2 s of the fault.
                    await _wait(
                        lambda: any(
                            t.endswith("/status") and p["monitoring"] is False
                            and "injected detector fault" in (p.get("reason") or "")
                            for t, p, _ in obs.decoded()
                        ),
                        2.0,
                        "the status on MQTT",
                    )  # fmt: skip
                    # Back: a fresh session detects again.
                    await _wait(lambda: runner.monitoring, 5, "monitoring back on")
                    assert runner.failures == 1 and runner.state == "online"
                    await asyncio.sleep(max(0.0, 11.8 - server.device_time()))
                    await gw.drain(timeout_s=2.0)
        gaps = [o.payload for o in outputs if o.kind == "gap" and o.payload]
        restart = [g for g in gaps if g["cause"] == "pipeline_restart"]
        assert len(restart) == 1, gaps
        assert 0.0 < restart[0]["duration_s"] < 3.0 and restart[0]["samples_missing"] > 0
        assert any(t.endswith("/gaps") and p["cause"] == "pipeline_restart" for t, p, _ in obs.decoded())
        events = [o.payload for o in outputs if o.kind == "event" and o.payload]
        # The spasms at 2 s and 9 s are detected (the one at 5.5 s may fall in the lost time).
        assert len(events) >= 2
        last = max(events, key=lambda e: e["onset"])
        assert last["onset"] > restart[0]["end"]

    asyncio.run(main())


# -- devices the detector cannot handle --------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"acc_rate_hz": 65535}, "unsupported accelerometer rate 65535 Hz"),
        ({"emg_rate_hz": 10}, "unsupported EMG rate 10 Hz"),
        ({"channel_labels": ("a", "a")}, "duplicate EMG channel labels ['a']"),
        ({"channel_labels": ("a", " ")}, "empty EMG channel label"),
    ],
)
def test_refused_info_is_one_reason_not_a_crash(kw: dict[str, Any], words: str) -> None:
    base: dict[str, Any] = {"emg_rate_hz": 1000, "acc_rate_hz": 50, "channel_labels": ("a", "b")}
    base.update(kw)
    problem = stream_problem(base["emg_rate_hz"], base["channel_labels"], base["acc_rate_hz"])
    assert problem is not None and words in problem
    out: list[Output] = []
    s = DeviceSession("d", out.append)
    n = len(base["channel_labels"])
    info = InfoFrame(
        seq=0, counter=0, boot_id=1, emg_rate_hz=base["emg_rate_hz"], acc_rate_hz=base["acc_rate_hz"],
        emg_scale_uv=0.1, acc_scale_g=0.001, channel_labels=base["channel_labels"], firmware="t",
        device_id="d",
    )  # fmt: skip
    s.on_frame(info, 1.0)
    assert s.refused is not None and words in s.refused and s.detector is None
    s.on_frame(EmgFrame(1, 0, np.zeros((10, n), dtype=np.int16)), 1.01)  # dropped, counted
    assert s.stats.no_info_frames == 1 and not out
    # A valid INFO from the same device lifts the refusal.
    s.on_frame(
        InfoFrame(
            seq=1, counter=0, boot_id=2, emg_rate_hz=1000, acc_rate_hz=50, emg_scale_uv=0.1,
            acc_scale_g=0.001, channel_labels=("a", "b"), firmware="t", device_id="d",
        ),
        2.0,
    )  # fmt: skip
    assert s.refused is None and s.detector is not None


# -- the systemd watchdog --------------------------------------------------------------------------


def test_notifier_speaks_the_sd_notify_protocol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(path))
    srv.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        n = Notifier()
        assert n.enabled and n.watchdog_s == 30.0
        assert n.ready("2 device(s)")
        assert srv.recv(256) == b"READY=1\nSTATUS=2 device(s)"
        assert n.watchdog()
        assert srv.recv(256) == b"WATCHDOG=1"
        n.close()
    finally:
        srv.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not Notifier().send("WATCHDOG=1")  # outside systemd: a no-op
    gone = Notifier(str(tmp_path / "nobody.sock"))
    assert not gone.watchdog()  # logged once, never raised
    gone.close()


def test_watchdog_is_fed_only_while_the_pipeline_progresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY=1 once up; WATCHDOG=1 while samples flow; silence while the detector is wedged."""
    path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(path))
    srv.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # WatchdogSec=2: a pet every 0.5 s

    def drain() -> list[bytes]:
        got = []
        while True:
            try:
                got.append(srv.recv(256))
            except BlockingIOError:
                return got

    async def main() -> None:
        rec = synthesize(builtin_scenario("e2e_short"))
        device = SimDevice(SignalSource.from_recording(rec), device_id="wd", seed=1)
        async with PtyServer(device) as server:
            # a wedged session sees no frames; with a 3 s staleness a slow host could declare the
            # link down and reconnect (a fresh session, progress again) before the test is done
            cfg = _config(tmp_path, server.path, None, stale_after_s=60.0)
            async with Gateway(cfg) as gw:
                gw.start()
                runner = gw.devices["dev-a"]
                await _wait(lambda: runner.monitoring, 5, "monitoring")
                got: list[bytes] = []

                def petted() -> bool:
                    got.extend(drain())
                    return got.count(b"WATCHDOG=1") >= 2

                await _wait(petted, 10, "two watchdog pets")  # every 0.5 s; slower on a busy host
                assert got[0].startswith(b"READY=1") and sum(m.startswith(b"READY=1") for m in got) == 1
                # Wedge the pipeline: frames arrive, nothing reaches the detector, yet no
                # exception (the worst case). Progress stops, so must the watchdog, soon.
                session = runner.session
                session.on_frame = lambda *_a: None  # type: ignore[method-assign]
                await _wait(lambda: not runner.monitoring, 4, "monitoring off")
                assert "no samples" in gw.status_payload(runner)[0]["reason"]
                runner.state_since -= 3600  # as if wedged for an hour
                progress = runner.progress
                assert progress is not None and progress.last_mono is not None
                progress.last_mono -= 3600
                drain()
                await asyncio.sleep(0.6)  # a pet already decided before the wedge may still land
                drain()
                await asyncio.sleep(1.6)
                assert b"WATCHDOG=1" not in drain()

    try:
        asyncio.run(main())
    finally:
        srv.close()


# -- refused device configurations on a replay: no hang, a reason --------------------------------


@pytest.mark.parametrize(
    ("acc_rate", "labels", "reason"),
    [
        (65535, ("EMG a", "EMG b"), "unsupported accelerometer rate 65535 Hz"),
        (50, ("EMG a", "EMG a"), "duplicate EMG channel labels ['EMG a']"),
        (50, ("EMG a", ""), "empty EMG channel label"),
    ],
)
def test_refused_info_on_a_replay_ends_with_a_reason(
    tmp_path: Path, acc_rate: int, labels: tuple[str, ...], reason: str
) -> None:
    """A valid INFO frame the detector cannot handle, replayed at full speed: the replay ends
    (it used to hang), the status says refused with the reason, and nothing crashed."""
    from ingest.commands.replay import ReplayTransport, default_config
    from ingest.files.recording import DATA, CaptureRecord
    from ingest.wire.protocol import AccFrame, encode_frame

    t0 = 1.7e9
    info = InfoFrame(seq=0, counter=0, boot_id=7, emg_rate_hz=1000, acc_rate_hz=acc_rate, emg_scale_uv=0.1,
                     acc_scale_g=0.001, device_id="r", firmware="t", channel_labels=labels)  # fmt: skip
    recs = [CaptureRecord(t0, DATA, encode_frame(info), -1)]
    for k in range(200):  # 2 s of EMG and ACC after it
        emg = EmgFrame(k + 1, k * 10, np.zeros((10, 2), dtype=np.int16))
        acc = AccFrame(k + 1, k, np.zeros((1, 3), dtype=np.int16))
        recs.append(CaptureRecord(t0 + (k + 1) * 0.01, DATA, encode_frame(emg) + encode_frame(acc), -1))

    async def main() -> dict[str, Any]:
        cfg = default_config("r", tmp_path / "state")
        transport = ReplayTransport(name="r", queue_size=64, records=recs)
        async with Gateway(cfg, transport_factory=lambda _d: transport) as gw:
            gw.start()
            runner = gw.devices["r"]
            await asyncio.wait_for(transport.finished.wait(), 10)
            status, _ = gw.status_payload(runner)
            assert runner.failures == 0
            await gw.drain(timeout_s=1.0)
            return status

    status = asyncio.run(main())
    assert status["monitoring"] is False
    assert status["state"] in ("refused", "ended")
    assert status["reason"] == f"refused: {reason}" or reason in status["reason"]


def test_gateway_process_speaks_sd_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``neurospasm run`` as systemd runs it (Type=notify, WatchdogSec=30): READY=1, then
    WATCHDOG=1 while the device streams, STOPPING=1 on SIGTERM; a real datagram socket."""
    from support.harness import gateway, start_sim

    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(20)
    sim = None
    try:
        sim, port_path = start_sim(tmp_path, "e2e_short", ["--loop"])
        cfg = tmp_path / "gw.toml"
        cfg.write_text(
            f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n'
            f'[[devices]]\nid = "dev-a"\nport = "{port_path}"\n'
            "[mqtt]\nenabled = false\n[local]\nenabled = true\n"
        )
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # a pet every 0.5 s
        gw = gateway(tmp_path, cfg)
        got: list[bytes] = []
        t0 = time.monotonic()
        while got.count(b"WATCHDOG=1") < 3 and time.monotonic() - t0 < 20:
            got.append(srv.recv(256))
        assert got[0].startswith(b"READY=1"), (got, gw.tail())
        assert got.count(b"WATCHDOG=1") >= 3, gw.tail()
        # Stop reading: the queue (net.unix.max_dgram_qlen datagrams) fills within seconds, and a
        # full notify queue must never block the gateway. Waited for, not slept on.
        wait_until(lambda: "cannot notify systemd" in gw.tail(), 30, "the notify queue to fill")
        time.sleep(1.0)  # more pets meet the full queue: still said only once (checked below)
        assert gw.stop() == 0, gw.tail()  # SIGTERM handled at once: the loop never blocked
        assert gw.tail().count("cannot notify systemd") == 1  # the full queue, said once
    finally:
        if sim is not None:
            sim.stop()
        srv.close()
