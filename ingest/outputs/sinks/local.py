"""Local storage of what would go to InfluxDB: line-protocol files, one per UTC day.

The demo's database, and a gateway's last resort when no server is configured. Files are plain
line protocol, so ``influx write`` (or ``curl --data-binary @file .../write``) imports them later.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from ingest.outputs.sinks.base import SinkUnavailable


@dataclass
class LocalLineSink:
    directory: Path
    name: str = "local"
    fsync: bool = False

    async def __aenter__(self) -> Self:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkUnavailable(f"local store {self.directory}: {exc.strerror}") from exc
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def path_for(self, t: float | None = None) -> Path:
        return self.directory / (time.strftime("%Y-%m-%d", time.gmtime(t)) + ".lp")

    async def send(self, records: list[bytes]) -> None:
        # A local append of a batch is a few hundred microseconds; a thread would cost more.
        self._append(self.path_for(), b"".join(records))

    def _append(self, path: Path, data: bytes) -> None:
        try:
            with path.open("ab") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            raise SinkUnavailable(f"local store {path}: {exc.strerror}") from exc
