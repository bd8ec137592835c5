"""Recordings on disk: the capture format, EDF+/BDF+/CSV readers and writers.

``is_capture`` lives here, not in ``recording`` (which loads the decode loop, the session and
every device decoder): ``neurospasm detect`` asks it of every file, most of which are EDF.
"""

from __future__ import annotations

from pathlib import Path

#: The first 8 bytes of a capture (``ingest.files.recording``, docs/recordings.md).
MAGIC = b"NSCAP\r\n\x1a"


def is_capture(path: str | Path) -> bool:
    """Does ``path`` start like a capture (``.nsc``)? False when it cannot be read, and for
    anything but a regular file (opening a FIFO with no writer would block for ever)."""
    try:
        if not Path(path).is_file():
            return False
        with Path(path).open("rb") as f:
            return f.read(8) == MAGIC
    except OSError:
        return False
