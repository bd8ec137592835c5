"""Argument types for the command line: each turns a bad value into one argparse error line.

Kept apart from ``ingest.config`` (pydantic) and the detector (scipy): building the parser
imports this module only, so ``neurospasm --help`` stays fast; the heavy parts load inside the
checks that need them.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.pseudonyms import PSEUDONYM_PATTERN

if TYPE_CHECKING:
    from detectors import DetectorConfig

__all__ = [
    "detector_config_json",
    "output_file",
    "positive_float",
    "positive_int",
    "pseudonym",
    "writable_dir",
]


def pseudonym(text: str) -> str:
    """A device or patient id as given on the command line: a pseudonym, never a name.

    The same rule as ``[[devices]].id``: it ends up in event payloads, topics and tags."""
    if not re.match(PSEUDONYM_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a pseudonymous id (letters, digits, '_', '.', '-'; no spaces, at most 64; "
            "never a person's name)"
        )
    return text


def detector_config_json(text: str) -> DetectorConfig:
    """``--detector-config '{"mains_hz": 60}'``: a JSON object of detector settings."""
    import json

    shown = text if len(text) <= 80 else text[:77] + "..."
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc.msg} at character {exc.pos}): {shown!r}") from None
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits; nesting too deep
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise argparse.ArgumentTypeError(f"not usable JSON ({why}): {shown!r}") from None
    from detectors import DetectorConfig
    from detectors.config import ConfigError

    try:
        return DetectorConfig.from_dict(data, source="detector config")
    except ConfigError as exc:
        # argparse prints one line: several problems joined, each still naming its key.
        raise argparse.ArgumentTypeError("; ".join(str(exc).splitlines())) from None


def output_file(text: str) -> str:
    """A file to write (``detectors.configfile.output_file``; loaded when the option is given)."""
    from detectors.configfile import output_file as check

    return check(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (``detectors.configfile.positive_float``)."""
    from detectors.configfile import positive_float as check

    return check(text)


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return v


def writable_dir(text: str) -> str:
    """``--state-dir``: a directory that can be created and written (one line if not)."""
    from ingest.config import ConfigError, check_state_dir

    try:
        check_state_dir(Path(text), "argument", "state dir")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("argument: state dir: ")) from None
    return text
