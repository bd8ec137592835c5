"""``neurospasm sim``: serve a simulated wearable until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import Scenario, builtin_scenario, builtin_scenario_names, load_scenario
from firmware_sim.signals import synthesize


def resolve_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a TOML file by path."""
    if name_or_path.endswith(".toml") or Path(name_or_path).exists():
        return load_scenario(name_or_path)
    if name_or_path not in builtin_scenario_names():
        raise SystemExit(
            f"neurospasm sim: unknown scenario {name_or_path!r}; built-in: {', '.join(builtin_scenario_names())}"
        )
    return builtin_scenario(name_or_path)


async def serve_serial(args: argparse.Namespace) -> int:
    if not args.serial:
        print("neurospasm sim: choose a transport (--serial)", file=sys.stderr)
        return 2
    scenario = resolve_scenario(args.scenario)
    recording = synthesize(scenario)
    if args.labels:
        Path(args.labels).write_text(recording.labels_json(), encoding="utf-8")
    drift = args.drift_ppm if args.drift_ppm is not None else scenario.faults.clock_drift_ppm
    device = SimDevice(
        SignalSource.from_recording(recording, loop=args.loop),
        device_id=args.device_id,
        autostart=args.autostart,
        seed=scenario.seed,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with PtyServer(device, drift_ppm=drift) as server:
        print(server.path, flush=True)
        if args.path_file:
            Path(args.path_file).write_text(server.path + "\n", encoding="utf-8")
        print(
            f"simulated wearable {args.device_id}: scenario {scenario.name!r}, "
            f"{len(recording.channel_labels)} EMG channels at {recording.emg_rate_hz} Hz; "
            "waiting for the gateway's START (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        print(
            f"sent {device.stats.frames_sent} frames ({device.stats.bytes_sent} bytes), "
            f"{server.stats.bytes_dropped} bytes dropped while nobody listened",
            file=sys.stderr,
        )
    return 0
