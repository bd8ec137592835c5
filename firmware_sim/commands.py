"""The simulator's subcommands for the ``neurospasm`` command line: ``register(subparsers)``.

The command line (``ingest.commands.cli``) calls ``register``; this module imports nothing
heavy, so ``neurospasm --help`` stays fast: the simulator itself (signals, scipy) loads when a
``sim`` command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["add_fault_arguments", "add_sim_arguments", "register"]


def _kit(name: str) -> Callable[[str], Any]:
    """An argparse ``type=`` from the shared configuration kit (``detectors.configfile``), loaded
    when the option is given: importing it here would load numpy into ``neurospasm --help``.
    ``positive_float`` for ``--speed`` (0 was taken for 1, real time, without a word);
    ``output_file`` for what the simulator writes (labels, device paths, the injector's truth):
    checked now, not when the run ends and what it did is lost."""

    def check(text: str) -> Any:
        import detectors.configfile as configfile

        return getattr(configfile, name)(text)

    check.__name__ = name
    return check


def add_sim_arguments(sim: argparse.ArgumentParser) -> None:
    """The options of ``neurospasm sim`` (shared with ``python -m firmware_sim.cli``)."""
    sim.add_argument("--serial", action="store_true", help="serve on a pseudo-terminal and print its path")
    sim.add_argument(
        "--ble-socket",
        metavar="PATH",
        help="serve a BLE device (myo, polar-h10, or ours) on the BLE bridge: a Unix socket (0600) "
        "that the gateway names with ble_bridge = PATH; prints the path",
    )
    sim.add_argument(
        "--ble-address",
        metavar="ADDR",
        default=None,
        help="Bluetooth address of the first BLE device (default C0:FF:EE:00:00:01; more count up)",
    )
    sim.add_argument(
        "--device",
        default="neurospasm",
        metavar="KIND",
        help="protocol the simulated device speaks: neurospasm (ours, default) or a vendor's "
        "personality (serial: cyton, shimmer, bitalino; BLE: myo, polar-h10; see "
        "firmware_sim/personalities)",
    )
    sim.add_argument(
        "--device-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a personality option (e.g. daisy=1 for cyton); repeatable",
    )
    sim.add_argument(
        "--scenario", default="demo", help="built-in scenario name or a TOML file (default: demo)"
    )
    sim.add_argument(
        "--recording",
        metavar="FILE",
        help="serve a recorded stream instead of a scenario: EDF+/BDF+, CSV or a capture (.nsc); "
        "read by the neurospasm command (ingest/commands/simrec.py)",
    )
    sim.add_argument(
        "--speed",
        type=_kit("positive_float"),
        default=1.0,
        help="device seconds per wall-clock second (default 1: real time)",
    )
    sim.add_argument("--loop", action="store_true", help="repeat the scenario forever")
    sim.add_argument("--device-id", default="sim-0001", help="id of the first device; more devices count up")
    sim.add_argument("--devices", type=int, default=1, help="how many simulated devices, each on its own pty")
    sim.add_argument(
        "--drift-ppm", type=_kit("drift_ppm"), default=None, help="device crystal error (default: scenario's)"
    )
    sim.add_argument("--autostart", action="store_true", help="stream without waiting for a START command")
    sim.add_argument(
        "--path-file",
        type=_kit("output_file"),
        help="also write the device paths (one per line) to this file",
    )
    sim.add_argument(
        "--labels",
        type=_kit("output_file"),
        help="write the scenario's ground-truth labels (JSON) to this file",
    )
    add_fault_arguments(sim)


def add_fault_arguments(p: argparse.ArgumentParser) -> None:
    """Fault overrides on top of the scenario's ``[faults]`` section."""
    g = p.add_argument_group("faults (default: the scenario's [faults] section)")
    g.add_argument("--no-faults", action="store_true", help="ignore the scenario's faults: a perfect link")
    g.add_argument("--frame-loss", type=float, default=None, help="i.i.d. probability a frame is lost")
    g.add_argument("--corrupt-rate", type=float, default=None, help="probability a frame has flipped bytes")
    g.add_argument("--duplicate-rate", type=float, default=None)
    g.add_argument("--reorder-rate", type=float, default=None)
    g.add_argument("--jitter-ms", type=float, default=None, help="std of host arrival jitter")
    g.add_argument("--fault-seed", type=int, default=None, help="fault RNG seed (default: scenario's)")
    g.add_argument(
        "--truth",
        type=_kit("output_file"),
        help="on exit, write what the fault injector did (JSON) to this file",
    )


def _sim(args: argparse.Namespace) -> int:
    import asyncio

    from firmware_sim.cli import serve_serial

    return asyncio.run(serve_serial(args))


def register(sub: Any) -> None:
    """Add ``sim`` to a command line's subparsers."""
    sim = sub.add_parser("sim", help="run a simulated wearable")
    add_sim_arguments(sim)
    sim.set_defaults(handler=_sim)
