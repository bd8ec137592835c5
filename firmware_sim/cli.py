"""``neurospasm sim``: serve one or several simulated wearables until interrupted.

Each device gets its own pseudo-terminal; the paths are printed on stdout, one per line, in
device order, so a script can read them (``--path-file`` writes the same lines to a file). The
printed path is a stable symlink (``/tmp/neurospasm-sim-XXXX/ttySIM0``) that follows the device
across its ptys (the scenario's disconnects and reboots), like ``/dev/serial/by-id``, and is
removed when the simulator exits: point the gateway at it. (A bare ``/dev/pts/N`` is handed to
the next program that opens a pty once the simulator has gone, and a gateway reconnecting to it
would read that program's bytes.)

``firmware_sim.commands`` registers ``sim`` on the ``neurospasm`` command line (its options are
``add_sim_arguments``), and ``python -m firmware_sim.cli`` runs it stand-alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from detectors.configfile import format_errors
from firmware_sim.commands import add_fault_arguments, add_sim_arguments  # noqa: F401  (re-exported)
from firmware_sim.device import SignalSource, SimDevice
from firmware_sim.faults import FaultInjector
from firmware_sim.pty_server import PtyServer
from firmware_sim.scenario import (
    FaultSpec,
    Scenario,
    ScenarioError,
    resolve_scenario,
)
from firmware_sim.signals import Recording, synthesize

#: Bluetooth address of the first simulated BLE wearable (``--ble-address``; more count up).
DEFAULT_BLE_ADDRESS = "C0:FF:EE:00:00:01"


#: scenario ``faults`` keys and the command-line options that override them
_FAULT_FLAGS = (
    ("frame_loss_rate", "frame_loss"),
    ("corrupt_rate", "corrupt_rate"),
    ("duplicate_rate", "duplicate_rate"),
    ("reorder_rate", "reorder_rate"),
    ("jitter_ms", "jitter_ms"),
    ("seed", "fault_seed"),
)


def scenario_with_fault_overrides(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    """Apply the command-line fault options (validated like the scenario file itself)."""
    if getattr(args, "no_faults", False):
        return scenario.model_copy(update={"faults": FaultSpec()})
    over = {key: getattr(args, attr) for key, attr in _FAULT_FLAGS if getattr(args, attr, None) is not None}
    if not over:
        return scenario
    try:
        faults = FaultSpec.model_validate({**scenario.faults.model_dump(), **over})
    except ValidationError as err:  # one line naming the option, as a scenario file's key would be
        flags = {key: f"--{attr.replace('_', '-')}" for key, attr in _FAULT_FLAGS}
        errors = [
            {**e, "loc": (flags.get(str(e["loc"][0]), e["loc"][0]), *e["loc"][1:])} for e in err.errors()
        ]
        raise ScenarioError(format_errors("command line", errors)) from None
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
            _usage_error(f"--device-option {pair!r} is not KEY=VALUE")
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
        _usage_error(str(exc))


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


def _usage_error(message: str) -> NoReturn:
    """A bad option: one line, exit status 2 (argparse's own for a usage error)."""
    print(f"neurospasm sim: {message}", file=sys.stderr)
    raise SystemExit(2)


def link_of_kind(kind: str) -> str | None:
    """ "serial", "ble", "both" (our own wearable) or None for an unknown kind."""
    from firmware_sim.personalities import PERSONALITIES, personality_kinds

    if kind == "neurospasm":
        return "both"
    if kind not in personality_kinds():
        return None  # unknown kinds get make_sim_device's own message
    return PERSONALITIES[kind].link


def _transport_problem(kind: str, serial: bool, ble_socket: str | None) -> str | None:
    """One line when the transport options do not fit the kind (None when they do)."""
    link = link_of_kind(kind)
    if serial and ble_socket:
        return "neurospasm sim: choose one transport: --serial or --ble-socket PATH"
    if link == "ble" and serial:
        return (
            f"neurospasm sim: --device {kind} is a BLE device: serve it with --ble-socket PATH "
            "(the gateway reaches it with ble_bridge = PATH in its [[devices]] table)"
        )
    if link == "serial" and ble_socket:
        return f"neurospasm sim: --device {kind} is a serial device: serve it with --serial"
    if not serial and not ble_socket:
        if link == "ble":
            return f"neurospasm sim: --device {kind} is a BLE device: choose --ble-socket PATH"
        return "neurospasm sim: choose a transport (--serial, or --ble-socket PATH for a BLE device)"
    return None


async def serve_serial(args: argparse.Namespace, recording: Recording | None = None) -> int:
    """Serve simulated wearables on ptys, or on the BLE bridge (``--ble-socket``). ``recording``:
    serve it instead of ``args.scenario`` (``neurospasm sim --recording`` reads the file and passes
    it here)."""
    if getattr(args, "recording", None) and recording is None:
        print(
            "neurospasm sim: --recording is read by the neurospasm command (python -m ingest sim)",
            file=sys.stderr,
        )
        return 2
    kind = getattr(args, "device", "neurospasm") or "neurospasm"
    ble_socket = getattr(args, "ble_socket", None)
    problem = _transport_problem(kind, bool(getattr(args, "serial", False)), ble_socket)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    speed = float(getattr(args, "speed", 1.0) or 1.0)
    if not speed > 0:
        print(f"neurospasm sim: --speed must be positive, got {speed}", file=sys.stderr)
        return 2
    n_devices = int(getattr(args, "devices", 1) or 1)
    if n_devices < 1:
        print("neurospasm sim: --devices must be at least 1", file=sys.stderr)
        return 2
    addresses: list[str] = []
    if ble_socket:
        try:
            addresses = ble_addresses(getattr(args, "ble_address", None) or DEFAULT_BLE_ADDRESS, n_devices)
        except ValueError as exc:
            print(f"neurospasm sim: {exc}", file=sys.stderr)
            return 2
    if recording is not None:
        scenario = recording_scenario(recording, args)
    else:
        scenario = scenario_with_fault_overrides(resolve_scenario(args.scenario), args)
        recording = synthesize(scenario)
    if args.labels:
        _write_text(args.labels, recording.labels_json())
    if ble_socket:
        return await serve_ble(args, scenario, recording, ble_socket, speed, addresses)
    drift = args.drift_ppm if args.drift_ppm is not None else scenario.faults.clock_drift_ppm
    faulty = _has_faults(scenario.faults)
    link_dir = tempfile.TemporaryDirectory(prefix="neurospasm-sim-")
    source = SignalSource.from_recording(recording, loop=args.loop)
    servers: list[PtyServer] = []
    stop = asyncio.Event()
    _stop_on_signals(stop)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(link_dir.cleanup)
        for i, dev_id in enumerate(device_ids(args.device_id, n_devices)):
            device = make_sim_device(args, source, dev_id, scenario.seed + i)
            rates = _device_rates(device)
            injector = (
                FaultInjector.from_scenario(scenario, recording, seed_offset=i, **rates) if faulty else None
            )
            # always a stable path of this process's own: it follows the device across its ptys
            # and goes when the simulator does, so a gateway never reopens a /dev/pts/N that the
            # kernel has since given to another program (another simulator, a terminal)
            link = Path(link_dir.name) / f"ttySIM{i}"
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
            doc = {s.device.device_id: _injected(s.injector) for s in servers}
            _write_text(args.truth, json.dumps(doc, indent=2))
    return 0


def _injected(injector: FaultInjector | None) -> dict[str, list[dict[str, Any]]]:
    """A device's entry in the ``--truth`` file: what its fault injector did and the gaps that
    leaves (both empty without faults), the part every transport's entry shares."""
    if injector is None:
        return {"truth": [], "expected_gaps": []}
    return {"truth": injector.truth, "expected_gaps": injector.expected_gaps()}


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


def _absolute(path: str) -> str:
    """The socket path as printed and served: absolute, so a gateway started elsewhere finds it."""
    return os.path.abspath(path)


def ble_addresses(first: str, n: int) -> list[str]:
    """``C0:FF:EE:00:00:01`` x 3 -> ...:01, ...:02, ...:03 (the address counts up)."""
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", first):
        raise ValueError(f"--ble-address {first!r} is not a Bluetooth address (AA:BB:CC:DD:EE:FF)")
    base = int(first.replace(":", ""), 16)
    if base + n - 1 > 0xFFFFFFFFFFFF:
        raise ValueError(f"--ble-address {first} leaves no room for {n} devices")
    out = []
    for i in range(n):
        h = f"{base + i:012X}"
        out.append(":".join(h[k : k + 2] for k in range(0, 12, 2)))
    return out


async def serve_ble(
    args: argparse.Namespace,
    scenario: Scenario,
    recording: Recording,
    socket_path: str,
    speed: float,
    addresses: list[str],
) -> int:
    """Serve simulated BLE wearables on the BLE bridge (``firmware_sim.ble_bridge``) until stopped.

    Prints the socket path on stdout (and to ``--path-file``), as the pty server prints its pty
    paths; the devices' addresses go to stderr. The gateway names the socket in ``ble_bridge``.
    """
    from firmware_sim.ble import VirtualBle
    from firmware_sim.ble_bridge import BleBridgeServer, BridgedPeripheral, BridgeSocketError

    n_devices = len(addresses)
    drift = args.drift_ppm if args.drift_ppm is not None else scenario.faults.clock_drift_ppm
    faulty = _has_faults(scenario.faults)
    source = SignalSource.from_recording(recording, loop=args.loop)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    peripherals: list[BridgedPeripheral] = []
    path = _absolute(socket_path)
    async with VirtualBle() as air:
        ids = device_ids(args.device_id, n_devices)
        for i, (dev_id, address) in enumerate(zip(ids, addresses, strict=True)):
            device = make_sim_device(args, source, dev_id, scenario.seed + i)
            rates = _device_rates(device)
            injector = (
                FaultInjector.from_scenario(scenario, recording, seed_offset=i, **rates) if faulty else None
            )
            peripherals.append(
                BridgedPeripheral(device, injector=injector, address=address, speed=speed, drift_ppm=drift)
            )
        try:
            server = BleBridgeServer(air, path)
            await server.__aenter__()
        except (BridgeSocketError, OSError) as exc:
            print(f"neurospasm sim: --ble-socket {exc}", file=sys.stderr)
            return 2
        try:
            for p in peripherals:  # power on once the socket exists: a gateway may be waiting
                air.add(p)
            print(path, flush=True)
            if args.path_file:
                _write_text(args.path_file, path + "\n")
            first = peripherals[0]
            print(
                f"{n_devices} simulated {getattr(args, 'device', 'neurospasm')} wearable(s) "
                f"{first.device.device_id}..: on the BLE bridge {path}, address "
                f"{', '.join(p.address for p in peripherals)} (name {first.name!r}): scenario "
                f"{scenario.name!r}, {_describe_rates(first.device, recording)}, "
                f"faults {'on' if faulty else 'off'}; waiting for a central (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
        finally:
            await server.__aexit__(None, None, None)
        for p in peripherals:
            d = p.device
            print(
                f"{d.device_id} ({p.address}): sent {p.stats.notifications} notifications "
                f"({p.stats.notification_bytes} bytes), {p.stats.notifications_dropped} lost while "
                f"nobody was subscribed, {p.stats.disconnects} disconnects",
                file=sys.stderr,
            )
        if getattr(args, "truth", None):
            doc = {
                p.device.device_id: {
                    **_injected(p.injector),
                    "outages": [dataclasses.asdict(o) for o in p.outages],
                    "link_log": p.link_log,
                    "t_host_first_write": p.t_host_first_write,
                }
                for p in peripherals
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
