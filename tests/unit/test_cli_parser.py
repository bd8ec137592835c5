"""The command line builds only the parser of the command it runs, and that parser is the real one.

``ingest.commands.cli.COMMAND_MODULES`` lists the subcommands each module adds, so that
``neurospasm detect FILE`` imports the detect module alone (start-up per file). These tests
keep the table true: each module adds exactly the commands listed, every command of the full
parser is listed, and parsing a command with its own parser gives what the full parser gives.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.commands import cli

REPO = Path(__file__).resolve().parents[2]


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_each_module_adds_exactly_the_commands_the_table_lists() -> None:
    everything = _commands(cli.build_parser())
    listed = [c for cmds in cli.COMMAND_MODULES.values() for c in cmds]
    assert sorted(everything) == sorted(["run", "demo", *listed])
    for module, cmds in cli.COMMAND_MODULES.items():
        for command in cmds:
            assert _commands(cli.build_parser(command)) == ["run", "demo", *cmds], module


@pytest.mark.parametrize(
    "argv",
    [
        ["detect", "a.edf", "b.edf", "--device", "dev-01"],
        ["-v", "detect", "night.edf"],
        ["export-edf", "cap.nsc", "--out", "x.edf"],
        ["record", "--sim", "demo", "--out", "x.nsc"],
        ["run", "--config", "gw.toml"],
        ["worker", "--config", "w.toml"],
        ["sim"],
    ],
)
def test_a_commands_own_parser_parses_as_the_full_one(argv: list[str]) -> None:
    full = cli.build_parser().parse_args(argv)
    own = cli.build_parser(cli._command(argv)).parse_args(argv)
    assert vars(own) == vars(full)


def test_options_before_the_command_and_help_are_understood() -> None:
    assert cli._command(["-vv", "detect", "x"]) == "detect"
    assert cli._command(["--help"]) is None
    assert cli._command(["--version"]) is None
    assert cli._command([]) is None
    assert cli._command(["nosuch"]) == "nosuch"  # not a command: the full parser answers


def test_an_unknown_command_still_lists_every_command() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "ingest", "detekt", "x.edf"], cwd=REPO, capture_output=True, text=True
    )
    assert p.returncode == 2
    for command in ("detect", "replay", "sim", "dashboard", "export-edf"):
        assert command in p.stderr


def test_detect_imports_no_other_command_module() -> None:
    probe = (
        "import sys\n"
        "from ingest.commands import cli\n"
        "cli.build_parser(cli._command(['detect', 'x.edf']))\n"
        "print(','.join(m for m in cli.COMMAND_MODULES if m in sys.modules))\n"
        "print('asyncio' in sys.modules)\n"
    )
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert p.stdout.split() == ["ingest.commands.offline", "False"]


@pytest.mark.parametrize(
    ("preset", "command", "want"), [(None, "detect", "1"), ("3", "detect", "3"), (None, "devices", None)]
)
def test_a_detecting_command_asks_for_one_blas_thread_unless_the_user_chose(
    preset: str | None, command: str, want: str | None, tmp_path: Path
) -> None:
    """Set before numpy loads (OpenBLAS reads it then), only for commands that run a detector,
    and never over the user's own setting."""
    probe = (
        "import os, sys\n"
        "from ingest.commands import cli\n"
        "try:\n"
        f"    cli.main([{command!r}, '--help' if {command!r} == 'devices' else 'missing.edf'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    p = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert p.stdout.splitlines()[-1] == str(want), p.stderr
