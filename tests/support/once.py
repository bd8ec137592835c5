"""Work that every xdist worker of one run can share: made once, under a lock, then only read."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A directory that ``make(dir)`` filled, made once per test run however many workers need it.

    Under xdist every worker builds its own module-scoped fixtures, and with tests handed out one
    at a time (tests/conftest.py) a module's tests usually run on both workers: an expensive,
    read-only result (a recording replayed by the real commands, say) would be made twice. The
    workers' temporary directories share a parent that is new for each run, so the first worker
    makes it there under an exclusive lock and the others wait for it and read it. Without xdist
    it is an ordinary fresh temporary directory. A ``make`` that fails leaves no "done" mark: the
    next worker tries again (and fails the same way, visibly).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp(name)
        make(out)
        return out
    root = tmp_path_factory.getbasetemp().parent  # pytest-N/, shared by this run's workers only
    out, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                shutil.rmtree(out, ignore_errors=True)  # what a failed attempt left
                out.mkdir()
                make(out)
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out
