"""Configuration mistakes through the real command line: exit code 2 and exactly one line on
stderr naming the file and the dotted key; no traceback, whichever loader read the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("command", "body", "line"),
    [
        (
            "run",
            '[[devices]]\nid = "d1"\nport = "/dev/null"\n[mqtt]\ndetect_locally = false\n',
            "mqtt.detect_locally: moved: set it as scaling.detect_locally (a [scaling] table)",
        ),
        ("sim", 'name = "x"\nseed = 1\nduration_s = 10.0\nonse_s = 3\n', "onse_s: unknown key"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, command: str, body: str, line: str) -> None:
    p = tmp_path / f"{command}.toml"
    p.write_text(body)
    option = "--scenario" if command == "sim" else "--config"
    extra = ["--serial"] if command == "sim" else []
    done = subprocess.run(
        [sys.executable, "-m", "ingest", command, *extra, option, str(p)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"neurospasm: {p}: {line}"], done.stderr
    assert done.stdout == ""
