"""``neurospasm``: the command line, the one place that composes ``ingest`` and ``firmware_sim``.

    neurospasm run --config FILE      the gateway (collectors, detectors, sinks)
    neurospasm sim --serial           a simulated wearable on a pseudo-terminal (firmware_sim)
    neurospasm demo                   everything in one process on embedded defaults
    neurospasm detect | record | export-edf | replay | worker

Subcommands live beside the code they drive: each module named in ``COMMAND_MODULES`` has
``register(subparsers)``, which adds its parser with ``set_defaults(handler=...)``; the handler
takes the parsed arguments and returns the exit code. Building the parser imports only those
small modules: everything heavy (numpy, scipy, pydantic, the simulator) loads inside a handler,
so ``neurospasm --help`` answers at once (``bench/bench_startup.py``).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from ingest import __version__
from ingest.commands.args import positive_float, pseudonym, writable_dir

if TYPE_CHECKING:
    from firmware_sim.signals import Recording

log = logging.getLogger("neurospasm")

#: Modules that add subcommands, in the order --help lists them, with the commands each adds:
#: ``neurospasm detect FILE`` then builds the parser of ``detect`` alone (the others' modules
#: import asyncio, the simulator's parser, the dashboard's: ~60 ms of CPU per process, paid by
#: every file of a folder run one process per file). ``tests/unit/test_cli_parser.py`` checks
#: that each module adds exactly the commands listed here.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "firmware_sim.commands": ("sim",),
    "ingest.commands.offline": ("detect",),
    "ingest.commands.record": ("record", "export-edf"),
    "ingest.commands.replay": ("replay",),
    "ingest.commands.worker_cli": ("worker",),
    "ingest.commands.devices": ("devices",),
    "dashboard.cli": ("dashboard",),
}
#: Commands that run the detector: their filter designs come from the user's design cache
#: (``ingest.files.design_cache``), so a process that finds them there never imports scipy.signal.
DETECTING_COMMANDS = frozenset({"run", "demo", "detect", "replay", "worker", "export-edf"})


def _single_threaded_blas() -> None:
    """One OpenBLAS thread for a command that runs a detector, unless the user chose a number.

    The detector's linear algebra is tiny (least squares on a few columns, 2-4 coefficient fits):
    extra BLAS threads never help it, and the pool numpy's OpenBLAS starts at import spins on the
    other cores while the interpreter loads (~35 ms of CPU per process on 2 cores, more than
    reading a 20-minute file), and under load a threaded call can stall. Read by OpenBLAS when
    numpy loads, so only set before that (not in a process that already imported numpy)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _setup_logging(verbose: int, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    # Third-party chatter (amqtt logs every packet at INFO) drowns what a person needs to see.
    for noisy in ("amqtt", "transitions", "asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose < 2 else logging.INFO)
    logging.getLogger("amqtt.broker").setLevel(logging.CRITICAL if verbose < 2 else logging.INFO)


async def _run_gateway(config_path: str) -> int:
    import asyncio
    import contextlib
    import signal

    from ingest.config import ConfigError, check_dirs, check_files, load_config
    from ingest.stream.runner import Gateway

    cfg = load_config(config_path)
    if not cfg.devices:
        raise ConfigError(f"{config_path}: devices: no device configured ([[devices]] with id and port)")
    check_files(cfg, config_path)  # secrets and TLS files: one line now, not a traceback per retry
    check_dirs(cfg, config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Gateway(cfg) as gw:
        log.info("gateway up: %d device(s), sinks: %s", len(cfg.devices), ", ".join(gw.deliveries) or "none")
        await gw.run_until(stop)
    return 0


def _run_cmd(args: argparse.Namespace) -> int:
    import asyncio

    return asyncio.run(_run_gateway(args.config))


def _sim_recording_cmd(args: argparse.Namespace) -> int:
    """``neurospasm sim --recording FILE``: the command line reads the file (the simulator may not
    import the gateway's readers) and hands the simulator the signals."""
    import asyncio

    from firmware_sim.cli import serve_serial

    recording = _read_recording("sim", args.recording)
    if recording is None:
        return 2
    return asyncio.run(serve_serial(args, recording=recording))


def _read_recording(command: str, path: str) -> Recording | None:
    """The recording a simulated device serves (``ingest.commands.simrec``), or None after one
    line naming the file on stderr: ``sim --recording`` and ``demo --recording`` read alike."""
    from ingest.commands.simrec import SimRecordingError, load_recording

    try:
        return load_recording(path)
    except SimRecordingError as exc:
        print(f"neurospasm {command}: {exc}", file=sys.stderr)
        return None


def _demo_cmd(args: argparse.Namespace) -> int:
    import asyncio

    from ingest.commands.demo import check_kind, run_demo

    problem = check_kind(args.device)
    if problem is not None:
        print(f"neurospasm demo: {problem}", file=sys.stderr)
        return 2
    recording = None
    if args.recording:
        recording = _read_recording("demo", args.recording)
        if recording is None:
            return 2
    return asyncio.run(run_demo(args, recording=recording))


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``neurospasm detect: error: argument ...``),
    exit code 2; ``--help`` still shows the usage. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command`` (a subcommand a module of ``COMMAND_MODULES``
    adds), only that module's subcommands besides the built-in ``run`` and ``demo``: enough to
    parse and run that command, or show its ``--help``."""
    p = _Parser(prog="neurospasm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"neurospasm {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway from a TOML config")
    run.add_argument("--config", "-c", required=True, help="gateway TOML (see deploy/gateway.example.toml)")
    run.set_defaults(handler=_run_cmd)

    demo = sub.add_parser("demo", help="simulated wearable + embedded broker + local storage, live view")
    demo.add_argument(
        "--duration", type=positive_float, default=None, help="stop after this many seconds (default: Ctrl-C)"
    )
    demo.add_argument(
        "--state-dir", default=None, type=writable_dir,
        help="where local series and the spool go (default: a temp dir)",
    )  # fmt: skip
    demo.add_argument(
        "--device", default="neurospasm", metavar="KIND",
        help="the simulated wearable's protocol: neurospasm (ours, default), cyton, shimmer, bitalino "
        "(on a pty) or myo, polar-h10 (on the in-process virtual BLE backend)",
    )  # fmt: skip
    demo.add_argument(
        "--scenario", default=None,
        help="built-in scenario name or TOML file (default: demo; tremor_clean for polar-h10: no EMG)",
    )  # fmt: skip
    demo.add_argument(
        "--recording", metavar="FILE", help="serve a recording (EDF+/BDF+, CSV, capture .nsc) instead, looped"
    )
    demo.add_argument(
        "--speed", type=positive_float, default=1.0, help="device seconds per wall-clock second (default 1)"
    )
    demo.add_argument("--plain", action="store_true", help="plain log lines instead of the live view")
    demo.add_argument("--dashboard-port", type=int, default=8080, help="the dashboard's port (default 8080)")
    demo.add_argument("--no-dashboard", action="store_true", help="do not start the web dashboard")
    demo.set_defaults(handler=_demo_cmd)

    if command in ("run", "demo"):
        modules: list[str] = []
    else:
        modules = [m for m, cmds in COMMAND_MODULES.items() if command in cmds] or list(COMMAND_MODULES)
    for name in modules:
        importlib.import_module(name).register(sub)
    return p


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), or None."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg in ("-h", "--help", "--version"):
            return None
    return None


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Values the subcommands' own parsers accept but that cannot work (one line, exit 2)."""
    if args.command == "sim" and getattr(args, "devices", 1) < 1:
        parser.error(f"sim: argument --devices: must be at least 1, got {args.devices}")
    if args.command == "sim" and getattr(args, "device_id", None):
        try:
            pseudonym(args.device_id)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"sim: argument --device-id: {exc}")


def _short_lived_numpy() -> None:
    """No transparent huge pages for numpy's arrays in ``neurospasm detect``, unless the user chose.

    numpy asks the kernel for huge pages on every array of 4 MiB or more (the whole recording,
    read at once, and its decoding). With the kernel's usual ``defrag=madvise`` setting each such
    page fault may compact memory first: on a busy machine a 20-minute 4-channel file's process
    spent 0.05-0.3 s in the kernel for it, where a process that reads its file once and ends
    never gets those pages' worth back (measured in ``bench/bench_detect_files.py``). Read by
    numpy when it loads, so only set before that."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command(argv)
    # ``detect`` is a short process that makes its long-lived objects (modules, the detector's
    # designs) at start-up and little cyclic garbage after (~0.1 MB per 20-minute file): the
    # collector's passes over the import-time objects (~10 ms of a 0.15 s start) buy nothing.
    # ``ingest.commands.offline`` freezes what start-up made and collects between files.
    pause_gc = command == "detect" and gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        return _main(argv, command)
    finally:
        if pause_gc:
            gc.unfreeze()
            gc.enable()


def _main(argv: list[str], command: str | None) -> int:
    parser = build_parser(command)
    args = parser.parse_args(argv)
    _check_args(parser, args)
    _setup_logging(args.verbose, quiet=args.command == "demo" and not args.plain and args.verbose == 0)
    handler = args.handler
    if args.command in DETECTING_COMMANDS:
        _single_threaded_blas()
        if args.command == "detect":
            _short_lived_numpy()
        from ingest.files.design_cache import install

        install()
    if args.command == "sim" and getattr(args, "recording", None):
        handler = _sim_recording_cmd  # the composition root reads the recording for the simulator
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # The error types are looked up only now: importing them up front would load pydantic
        # (ingest.config) and the capture machinery into every command, ``detect`` included,
        # for the rare run that fails (bench/bench_detect_files.py counts start-up per file).
        from detectors.config import ConfigError

        if not isinstance(exc, (ConfigError, *_input_errors())):
            raise
        # Bad input (a config, a recording, a capture, a scenario): the message names it.
        who = "neurospasm" if isinstance(exc, ConfigError) else f"neurospasm {args.command}"
        print(f"{who}: {one_line(str(exc))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """Several problems (one per line, each ``source: key: message``) as one line: the first in
    full, the others after it without repeating the source."""
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return message.strip()
    source = lines[0].split(": ", 1)[0] + ": "
    rest = [line.removeprefix(source) for line in lines[1:]]
    return f"{lines[0]}; and {len(rest)} more: " + "; ".join(rest)


def _input_errors() -> tuple[type[Exception], ...]:
    """The error types that mean "this input is bad" (each message names the file or key)."""
    from ingest.commands.replay import ReplayError
    from ingest.files.readers import RecordingError
    from ingest.files.recording import CaptureError

    # A bad scenario is a ConfigError (``firmware_sim.scenario.ScenarioError``), caught as such.
    return (RecordingError, CaptureError, ReplayError)


if __name__ == "__main__":
    sys.exit(main())
