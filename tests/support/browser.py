"""A real headless Chromium for the dashboard tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Never ``playwright install`` (it downloads a browser build; CI cannot): Playwright's Python package
ships its driver, and we point it at the system browser. Every launch gets a new, empty profile
directory, and the flags turn off everything that would phone home or wait for a GPU.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    """The system Chromium; fails (never skips) with the Debian package to install."""
    path = os.environ.get("NEUROSPASM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            "chromium not found (Debian package 'chromium'). Run scripts/test, which installs it, or: "
            "apt-get install -y --no-install-recommends chromium",
            pytrace=False,
        )
    return path


@contextmanager
def chromium(profile_dir: Path, width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A browser context (Playwright ``BrowserContext``) with downloads accepted."""
    from playwright.sync_api import sync_playwright

    profile_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile_dir),
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
            accept_downloads=True,
        )
        try:
            yield ctx
        finally:
            ctx.close()
