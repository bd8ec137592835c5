"""The detector's filter designs kept on disk, so a later process never imports scipy.signal.

``detectors.designs`` computes each filter design (SOS sections, steady states) with scipy.signal
the first time its parameters are seen; ``import scipy.signal`` alone is most of a second of
CPU, paid by every ``neurospasm detect`` process. ``DesignCache`` is the store the command line
plugs in (``install``): one small versioned ``.npz`` in the user's cache directory
(``$XDG_CACHE_HOME/neurospasm``, else ``~/.cache/neurospasm``).

It is a cache, never a source of truth: each entry carries a SHA-256 digest of its key and
bytes, and a file that cannot be read (corrupt, truncated, another format, not ours) or an entry
whose digest does not match is ignored, and rebuilt by scipy at the next lookup; the detector
checks what it gets again (``designs._design``). Writes go to a temporary file in the same
directory, renamed over the old one (atomic: a reader sees the old file or the new, never half
of one; two processes writing at once lose at most an entry, recomputed later). Any I/O
problem (read-only home, full disk) only means designs are computed, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np

#: The file's name, and the layout it holds (``format``): bump both when the layout changes.
FILE_NAME = "designs.v1.npz"
FORMAT = 1
#: Entries kept (oldest dropped first): a few per detector set-up; others are other versions'.
MAX_ENTRIES = 256


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/neurospasm`` (an absolute path, as the XDG spec requires), else
    ``~/.cache/neurospasm``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "neurospasm"


def _digest(key: str, value: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(key.encode("utf-8") + b"\0" + value.dtype.str.encode() + repr(value.shape).encode() + b"\0")
    h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


class DesignCache:
    """A ``detectors.designs.DesignStore`` in one ``.npz`` under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / FILE_NAME
        self._entries: dict[str, np.ndarray] | None = None

    def _read(self) -> dict[str, np.ndarray]:
        """The file's valid entries, in their order; nothing when it is missing or unreadable."""
        try:
            # opened here, not by np.load: it leaves the file open when the zip is bad
            with self.path.open("rb") as f, np.load(f, allow_pickle=False) as z:
                if int(z["format"]) != FORMAT:
                    return {}
                keys = [str(k) for k in z["keys"]]
                digests = [str(d) for d in z["digests"]]
                values = [z[f"v{i}"] for i in range(len(keys))]
        except Exception:  # missing, corrupt, truncated, not an npz, another layout: no cache
            return {}
        if len(digests) != len(keys):
            return {}
        return {k: v for k, d, v in zip(keys, digests, values, strict=True) if _digest(k, v) == d}

    def get(self, key: str) -> np.ndarray | None:
        if self._entries is None:
            self._entries = self._read()
        return self._entries.get(key)

    def put(self, key: str, value: np.ndarray) -> None:
        """Add ``key`` to the file (with what other processes added meanwhile), atomically."""
        entries = self._read()  # merge: another process may have written since we read
        entries.pop(key, None)
        entries[key] = np.ascontiguousarray(value)
        while len(entries) > MAX_ENTRIES:
            del entries[next(iter(entries))]
        self._entries = entries
        keys = list(entries)
        arrays: dict[str, np.ndarray] = {f"v{i}": entries[k] for i, k in enumerate(keys)}
        arrays["keys"] = np.array(keys)
        arrays["digests"] = np.array([_digest(k, entries[k]) for k in keys])
        arrays["format"] = np.array(FORMAT)
        import tempfile  # only a process that computed a design writes (tempfile imports random)

        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".designs-", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, self.path)
            tmp = None
        except OSError:
            pass  # a cache that cannot be written only means designs are computed next time
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def install(directory: Path | None = None) -> DesignCache:
    """Let the detector's designs come from (and go to) ``directory`` (default ``default_dir()``)."""
    from detectors import designs

    cache = DesignCache(directory if directory is not None else default_dir())
    designs.use_store(cache)
    return cache
