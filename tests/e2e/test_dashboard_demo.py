"""``neurospasm demo`` starts the dashboard, prints its URL, and the page shows the demo's events.

The demo is one process with nothing installed but Python (embedded broker, SQLite store); the page
is checked in Debian's Chromium as a person would open it from the printed URL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from support.browser import chromium
from support.servers import free_port, wait_until


@pytest.mark.slow
@pytest.mark.servers  # needs the chromium binary, like the server tests need theirs
def test_demo_prints_the_dashboard_url_and_the_page_shows_events(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    port = free_port()
    with open(out, "wb") as fh:
        demo = subprocess.Popen(
            [sys.executable, "-m", "ingest", "demo", "--plain", "--duration", "40", "--dashboard-port",
             str(port), "--state-dir", str(tmp_path / "state")],
            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        wait_until(lambda: "neurospasm dashboard: http" in out.read_text(), 60, "the dashboard URL")
        m = re.search(r"neurospasm dashboard: (http://127\.0\.0\.1:\d+/)", out.read_text())
        assert m and m.group(1) == f"http://127.0.0.1:{port}/", out.read_text()
        url = m.group(1)
        with chromium(tmp_path / "profile") as ctx:
            page = ctx.new_page()
            page.set_default_timeout(25_000)
            page.goto(url + "p/demo/demo-patient/live")
            page.get_by_test_id("monitoring-banner").wait_for()
            page.get_by_test_id("event-item").first.wait_for()  # the first spasm is 3 s in

        # ... and it is in the demo's SQLite store, not only in the live feed.
        def stored() -> int:
            with urllib.request.urlopen(url + "api/p/demo/demo-patient/events") as r:
                return sum(e["source"] == "store" for e in json.load(r)["events"])

        wait_until(lambda: stored() >= 1, 15, "an event in the demo's store")
        # A browser tab left open holds a live stream that never ends by itself: the demo stops
        # all the same (it once waited for the tab to close, past its summary, SIGTERM included).
        tab = urllib.request.urlopen(url + "api/stream", timeout=20)
        assert tab.readline() == b"retry: 2000\n"
        demo.send_signal(signal.SIGINT)
        rc = demo.wait(20)
        rest = tab.read()  # the server ended the stream: read to its end, not to a timeout
        tab.close()
        assert b"event: broker" in rest
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        rc = demo.wait(30)
    assert rc == 0, out.read_text()[-3000:]
    assert "demo summary:" in out.read_text()
