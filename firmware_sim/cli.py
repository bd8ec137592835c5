"""``neurospasm sim``: serve one or several simulated wearables until interrupted.

Each device gets its own pseudo-terminal; the paths are printed on stdout, one per line, in
device order, so a script can read them (``--path-file`` writes the same lines to a file). When
the scenario's faults disconnect or reboot the device, the printed path is a stable symlink
(``/tmp/neurospasm-sim-XXXX/ttySIM0``) that follows the device across its ptys, like
``/dev/serial/by-id``: point the gateway at it.

``firmware_sim.commands`` registers ``sim`` on the ``neurospasm`` command line (its options are
``add_sim_arguments``), and ``python -m firmware_sim.cli`` runs it stand-alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from firmware_sim.commands import add_fault_arguments, add_sim_arguments  # noqa: F401  (re-exported)
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.faults import FaultInjector
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import FaultSpec, Scenario, builtin_scenario, builtin_scenario_names, load_scenario
from firmware_sim.signals import Recording, synthesize


def resolve_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a TOML file by path."""
    if name_or_path.endswith(".toml") or Path(name_or_path).exists():
        return load_scenario(name_or_path)
    if name_or_path not in builtin_scenario_names():
        known = ", ".join(builtin_scenario_names())
        raise SystemExit(f"neurospasm sim: unknown scenario {name_or_path!r}; built-in: {known}")
    return builtin_scenario(name_or_path)


def scenario_with_fault_overrides(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """Apply the command-line fault options (validated like the scenario file itself)."""
    if getattr(args, "no_faults", False):
        return scenario.model_copy(update={"faults": FaultSpec()})
    over = {
        key: getattr(args, attr)
        for key, attr in (
            ("frame_loss_rate", "frame_loss"),
            ("corrupt_rate", "corrupt_rate"),
            ("duplicate_rate", "duplicate_rate"),
            ("reorder_rate", "reorder_rate"),
            ("jitter_ms", "jitter_ms"),
            ("seed", "fault_seed"),
        )
        if getattr(args, attr, None) is not None
    }
    if not over:
        return scenario
    faults = FaultSpec.model_validate({**scenario.faults.model_dump(), **over})
    return scenario.model_copy(update={"faults": faults})


def _has_faults(f: FaultSpec) -> bool:
    return f != FaultSpec(seed=f.seed, clock_drift_ppm=f.clock_drift_ppm)


def device_ids(first: str, n: int) -> list[str]:
    """``sim-0001`` x 3 -> sim-0001, sim-0002, sim-0003 (the trailing number counts up)."""
    if n == 1:
        return [first]
    m = re.match(r"^(.*?)(\d+)$", first)
    if m is None:
        return [f"{first}-{i + 1}" for i in range(n)]
    head, num = m.group(1), m.group(2)
    return [f"{head}{int(num) + i:0{len(num)}d}" for i in range(n)]


def device_options(pairs: Sequence[str]) -> dict[str, str]:
    """``["daisy=1"]`` -> ``{"daisy": "1"}``; a malformed pair is a one-line error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"neurospasm sim: --device-option {pair!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def make_sim_device(args: argparse.Namespace, source: SignalSource, dev_id: str, seed: int) -> SimDevice:
    """Our own wearable, or a vendor personality (``--device``), with the command line's options."""
    from firmware_sim.personalities import UnknownPersonality, make_device

    kind = getattr(args, "device", "neurospasm") or "neurospasm"
    try:
        return make_device(
            kind,
            source,
            device_id=dev_id,
            autostart=args.autostart,
            seed=seed,
            options=device_options(getattr(args, "device_option", []) or []),
        )
    except UnknownPersonality as exc:
        raise SystemExit(f"neurospasm sim: {exc}") from None


def _write_text(path: str, text: str) -> None:
    """Small files for scripts (paths, labels, truth): written before or after the event loop's work.

    Written to a temporary name and renamed, so a script polling for the file never reads it
    half written (an empty pty path)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


def _describe_rates(device: SimDevice, recording: object) -> str:
    p = getattr(device, "personality", None)
    if p is not None:
        return f"{p.n_channels} EMG channels at {p.emg_rate_hz:g} Hz"
    return (
        f"{len(recording.channel_labels)} EMG channels at "  # type: ignore[attr-defined]
        f"{recording.emg_rate_hz} Hz"  # type: ignore[attr-defined]
    )


def _device_rates(device: SimDevice) -> dict[str, float]:
    """The rates a personality really samples at (its counters count those), for the injector."""
    p = getattr(device, "personality", None)
    if p is None:
        return {}
    return {"emg_rate_hz": p.emg_rate_hz, "acc_rate_hz": p.acc_rate_hz}


def recording_scenario(recording: Recording, args: argparse.Namespace) -> Scenario:
    """The scenario-shaped description of a served recording: its rates and channels, no events,
    and the faults of the command line only. Built with ``model_construct`` on purpose: a
    recording is not a scenario to validate (a vendor's 200 Hz file is below a scenario's
    minimum rate), it only carries what the fault injector reads."""
    scenario = Scenario.model_construct(
        name=recording.scenario_name, description="recording", seed=0, duration_s=recording.duration_s,
        emg_rate_hz=recording.emg_rate_hz, acc_rate_hz=recording.acc_rate_hz,
        channels=list(recording.channel_labels), events=[], confounders=[], faults=FaultSpec(),
    )  # fmt: skip
    return scenario_with_fault_overrides(scenario, args)


def _ble_refusal(kind: str) -> str | None:
    """The one line for a BLE kind (None for the others): its virtual radio is a bleak backend that
    only exists inside one process, so another process's gateway cannot reach it; ``neurospasm
    demo`` runs the real gateway in the same process."""
    from firmware_sim.personalities import PERSONALITIES, personality_kinds

    if kind not in personality_kinds() or kind == "neurospasm" or PERSONALITIES[kind].link != "ble":
        return None  # unknown kinds get make_sim_device's own message
    return (
        f"neurospasm sim: --device {kind} is a BLE device, simulated on an in-process virtual radio "
        f"that no other process can reach: run `neurospasm demo --device {kind}` (the real gateway "
        "against it over the real bleak front-end)"
    )


async def serve_serial(args: argparse.Namespace, recording: Recording | None = None) -> int:
    """Serve simulated wearables on ptys. ``recording``: serve it instead of ``args.scenario``
    (``neurospasm sim --recording`` reads the file and passes it here)."""
    if getattr(args, "recording", None) and recording is None:
        print(
            "neurospasm sim: --recording is read by the neurospasm command (python -m ingest sim)",
            file=sys.stderr,
        )
        return 2
    ble = _ble_refusal(getattr(args, "device", "neurospasm") or "neurospasm")
    if ble is not None:
        print(ble, file=sys.stderr)
        return 2
    speed = float(getattr(args, "speed", 1.0) or 1.0)
    if not speed > 0:
        print(f"neurospasm sim: --speed must be positive, got {speed}", file=sys.stderr)
        return 2
    if not args.serial:
        print("neurospasm sim: choose a transport (--serial)", file=sys.stderr)
        return 2
    n_devices = int(getattr(args, "devices", 1) or 1)
    if n_devices < 1:
        print("neurospasm sim: --devices must be at least 1", file=sys.stderr)
        return 2
    if recording is not None:
        scenario = recording_scenario(recording, args)
    else:
        scenario = scenario_with_fault_overrides(resolve_scenario(args.scenario), args)
        recording = synthesize(scenario)
    if args.labels:
        _write_text(args.labels, recording.labels_json())
    drift = args.drift_ppm if args.drift_ppm is not None else scenario.faults.clock_drift_ppm
    faulty = _has_faults(scenario.faults)
    link_dir = tempfile.TemporaryDirectory(prefix="neurospasm-sim-")
    source = SignalSource.from_recording(recording, loop=args.loop)
    servers: list[PtyServer] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(link_dir.cleanup)
        for i, dev_id in enumerate(device_ids(args.device_id, n_devices)):
            device = make_sim_device(args, source, dev_id, scenario.seed + i)
            rates = _device_rates(device)
            injector = (
                FaultInjector.from_scenario(scenario, recording, seed_offset=i, **rates) if faulty else None
            )
            link = (
                Path(link_dir.name) / f"ttySIM{i}"
                if injector is not None and injector.needs_link_control
                else None
            )
            server = PtyServer(
                device, drift_ppm=drift, speed=speed, injector=injector, link_path=link,
                jitter_seed=scenario.seed + i,
            )  # fmt: skip
            servers.append(await stack.enter_async_context(server))
        paths = [s.path for s in servers]
        print("\n".join(paths), flush=True)
        if args.path_file:
            _write_text(args.path_file, "".join(p + "\n" for p in paths))
        print(
            f"{n_devices} simulated {getattr(args, 'device', 'neurospasm')} wearable(s) "
            f"{servers[0].device.device_id}..: scenario {scenario.name!r}, "
            f"{_describe_rates(servers[0].device, recording)}, "
            f"faults {'on' if faulty else 'off'}; waiting for the gateway's START (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
        for s in servers:
            d = s.device
            print(
                f"{d.device_id}: sent {d.stats.frames_sent} frames ({d.stats.bytes_sent} bytes), "
                f"{s.stats.bytes_dropped} bytes dropped while nobody listened, "
                f"{s.stats.disconnects} disconnects, {s.stats.reboots} reboots",
                file=sys.stderr,
            )
        if getattr(args, "truth", None):
            doc = {
                s.device.device_id: {
                    "truth": s.injector.truth if s.injector else [],
                    "expected_gaps": s.injector.expected_gaps() if s.injector else [],
                }
                for s in servers
            }
            _write_text(args.truth, json.dumps(doc, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m firmware_sim.cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_sim_arguments(p)
    args = p.parse_args(argv)
    try:
        return asyncio.run(serve_serial(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
