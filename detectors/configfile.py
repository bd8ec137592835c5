"""The one reader of settings files and the one error formatter, shared by every room.

Gateway and worker configuration (``ingest.config``), simulator scenarios (``firmware_sim.scenario``)
and detector settings (``DetectorConfig.from_dict``) all fail the same way: one ``ConfigError``
line per problem, ``file: dotted.key: message``. This module lives in ``detectors/`` because that
room imports nothing of ours, so every other room may import it: ``firmware_sim`` may import only
the wire protocol and this configuration kit (tests/unit/test_architecture.py), and ``ingest``
imports ``detectors`` anyway.

It reads a file only at start-up, on behalf of a command; the streaming detector never does I/O.
No pydantic import either: pydantic's ``ValidationError.errors()`` is a list of plain dicts, which
is what ``format_errors`` takes.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from detectors.config import ConfigError

__all__ = [
    "ConfigError",
    "dotted",
    "drift_ppm",
    "format_errors",
    "load_toml",
    "output_file",
    "positive_float",
]


#: A key at the head of a validator's message: ``duration_s`` or ``mqtt.publish_frames``.
_KEY = re.compile(r"[A-Za-z_]\w*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*")


def dotted(loc: Iterable[int | str]) -> str:
    """pydantic's ``('devices', 2, 'port')`` -> ``devices[2].port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def format_errors(source: str, errors: Iterable[Mapping[str, Any]], *, reference: str | None = None) -> str:
    """One line per problem, each ``source: dotted.key: message``.

    ``errors`` is pydantic's ``ValidationError.errors()``. Validator names pydantic puts in the
    location (``function-after[...]``) are dropped; a cross-field check that names its key at the
    head of its message (``"duration_s: ..."``) has that key joined to the location; the offending
    scalar is quoted after type and range errors; ``reference`` (an example file) is named after
    an unknown key, the likeliest mistake being a typo.
    """
    lines = []
    for e in errors:
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        where = dotted(loc)
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + (f" (check the spelling against {reference})" if reference else "")
        else:
            head, sep, rest = msg.partition(": ")
            if sep and _KEY.fullmatch(head):
                where, msg = (f"{where}.{head}" if where else head), rest
            given = e.get("input")
            if e["type"] != "value_error" and isinstance(given, str | int | float | bool):
                msg += f" (got {given!r})"
        lines.append(f"{source}: {where}: {msg}" if where else f"{source}: {msg}")
    return "\n".join(lines)


def load_toml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """Read one TOML file: the one place settings files are read. ConfigError, one line, naming
    the file (and the line, for a syntax error) when it cannot be read or parsed."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a {what} file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 at byte offset {exc.start}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise ConfigError(f"{p}: not usable TOML: nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits (Python's conversion limit)
        raise ConfigError(f"{p}: not usable TOML: {str(exc).split(';')[0]}") from None


# -- command-line values (argparse ``type=``): shared by the command line and the simulator -------


def output_file(text: str) -> str:
    """A file to write: its directory must exist (checked now, not after an hour of work)."""
    p = Path(text)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file to write")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: directory {str(parent)!r} is not writable")
    return text


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_float(text: str) -> float:
    """A finite number > 0 (a rate, a speed), or one argparse line saying what is wrong."""
    v = _number(text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return v


def drift_ppm(text: str) -> float:
    """A crystal's error in ppm: finite, within the +-1000 ppm a scenario's ``clock_drift_ppm`` allows."""
    v = _number(text)
    if not (math.isfinite(v) and -1000 <= v <= 1000):
        raise argparse.ArgumentTypeError(f"must lie within +-1000 ppm, got {text!r}")
    return v
