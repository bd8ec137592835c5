"""The clinician's view in a real browser: simulator -> gateway -> Mosquitto -> dashboard -> Chromium.

Nothing is faked but the wearable: the simulator on a pty, ``neurospasm run`` writing the embedded
SQLite store, a real Mosquitto, ``neurospasm dashboard`` as its own process with a users file
created by ``neurospasm dashboard adduser``, and Debian's Chromium driven by Playwright. The page
is asserted as a clinician would see it: the patient appears, events appear live (each onset before
its completed event), a review persists across a reload and changes the counts, the "monitoring
inactive" banner appears when the simulator stops, and the report downloads as a PDF whose pages
render (pdftoppm). Screenshots go to the test's tmp dir (and to docs/img with
NEUROSPASM_DOCS_SCREENSHOTS=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
from playwright.sync_api import expect
from support.browser import chromium
from support.harness import Proc, gateway, start_sim, write_config
from support.servers import Mosquitto, free_port, wait_until

from dashboard.app.auth import UserStore

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"

# Records the order in which feed items appear (onset, then event, same id): installed before the
# page's own scripts run, kept in an attribute (the page's CSP forbids the eval that
# page.evaluate / wait_for_function with a string would need: the test runs under the real CSP).
FEED_RECORDER = """
const feed = [];
new MutationObserver((muts) => {
  for (const m of muts) for (const n of m.addedNodes) {
    if (n.nodeType === 1 && n.dataset && n.dataset.id && n.dataset.testid) {
      feed.push({ id: n.dataset.id, kind: n.dataset.testid, t: performance.now() });
      document.documentElement.dataset.feed = JSON.stringify(feed);
    }
  }
}).observe(document, { childList: true, subtree: true });
"""


class NoticeListener(threading.Thread):
    """An independent MQTT subscriber to the dashboard's notice topic (its own event loop)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            self.ready.set()

    async def _main(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="notice-listener") as client:
            await client.subscribe("neurospasm/v1/+/dashboard/notices", qos=1)
            self.ready.set()

            async def read() -> None:
                async for msg in client.messages:
                    self.messages.append((str(msg.topic), json.loads(bytes(msg.payload))))  # type: ignore[arg-type]

            reader = asyncio.create_task(read())
            while not self.done.is_set():  # noqa: ASYNC110 (a threading.Event, set from the test's thread)
                await asyncio.sleep(0.1)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def _status(url: str) -> int:
    """HTTP status of a GET (0 when nothing answers yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _shot(page: Any, tmp: Path, name: str) -> None:
    page.screenshot(path=str(tmp / f"dashboard-{name}.png"), full_page=True)
    if os.environ.get("NEUROSPASM_DOCS_SCREENSHOTS"):
        shutil.copy(tmp / f"dashboard-{name}.png", REPO / "docs" / "img" / f"dashboard-{name}.png")


def _text(page: Any, testid: str) -> str:
    return str(page.get_by_test_id(testid).first.inner_text()).strip()


@pytest.mark.slow
def test_dashboard_in_chromium(tmp_path: Path, mosquitto: Mosquitto) -> None:
    users = tmp_path / "users.json"
    # (`neurospasm dashboard adduser` itself is tested in test_dashboard_app.py, in-process.)
    UserStore(users).add("dr-07", PASSWORD, "e2e")
    UserStore(users).add("dr-other", PASSWORD, "elsewhere")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    store = tmp_path / "state" / "series" / "history.sqlite"
    # A notice rule the short scenario trips: more than 1 spasm in an hour, judged every second.
    dash_cfg = tmp_path / "dashboard.toml"
    dash_cfg.write_text("[dashboard]\nnotice_eval_s = 1\n\n[dashboard.notices]\nspasms_per_hour_above = 1\n")
    listener = NoticeListener(mosquitto.port)
    listener.start()
    assert listener.ready.wait(10) and listener.error is None, listener.error
    dash = Proc(
        [sys.executable, "-m", "ingest", "dashboard", "--config", str(dash_cfg),
         "--bind", f"127.0.0.1:{port}", "--users", str(users),
         "--mqtt-port", str(mosquitto.port), "--store", f"sqlite:{store}", "--state-dir",
         str(tmp_path / "dash"), "--stale-after", "4"],
        tmp_path / "dash.log",
    )  # fmt: skip
    sim = gw = None
    page_errors: list[str] = []
    try:
        with chromium(tmp_path / "profile") as ctx:
            # Browser, simulator and dashboard start side by side; the simulator streams on START.
            sim, pty_path = start_sim(tmp_path, "e2e_short")
            cfg = write_config(tmp_path, pty_path, mosquitto.port, local=True)
            sqlite = '[local]\nenabled = true\nformat = "sqlite"'
            cfg.write_text(cfg.read_text().replace("[local]\nenabled = true", sqlite))
            up = lambda: dash.p.poll() is not None or _status(base + "/api/me") > 0  # noqa: E731
            wait_until(up, 60, "the dashboard")
            assert _status(base + "/api/me") == 401, dash.tail()  # not without a login
            ctx.add_init_script(FEED_RECORDER)
            page = ctx.new_page()
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            # Console errors too (a blocked script or style under the CSP shows here), but not the
            # browser's note about the wrong-password answer (HTTP 401), which is expected.
            page.on(
                "console",
                lambda m: m.type == "error" and "status of 401" not in m.text and page_errors.append(m.text),
            )
            page.set_default_timeout(20_000)
            expect.set_options(timeout=20_000)

            # Login required: the patients page sends us to the login form.
            page.goto(base + "/")
            page.wait_for_url("**/login**")
            page.fill("input[name=username]", "dr-07")
            page.fill("input[name=password]", "wrong password")
            page.click("button[type=submit]")
            page.get_by_text("wrong username or password").wait_for()
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            page.get_by_test_id("patients").wait_for()

            # The gateway starts: the patient appears on the open page, monitoring.
            gw = gateway(tmp_path, cfg)
            card = page.locator("[data-testid=patient-card][data-patient=p-0001]")
            card.wait_for(timeout=60_000)  # the gateway process starts (imports) first
            expect(card.get_by_test_id("state-badge")).to_have_text("MONITORING")
            assert page.get_by_test_id("broker-banner").is_hidden()  # the dashboard hears the broker
            _shot(page, tmp_path, "patients")

            # Events appear live: onset first, then the completed event with the same id.
            page.goto(base + "/p/e2e/p-0001/live")
            page.get_by_test_id("event-item").nth(1).wait_for()
            feed = json.loads(page.locator("html").get_attribute("data-feed") or "[]")
            onsets = {f["id"]: f["t"] for f in feed if f["kind"] == "onset-item"}
            events = {f["id"]: f["t"] for f in feed if f["kind"] == "event-item"}
            live_seen = [i for i in events if i in onsets]
            assert live_seen, f"no event was seen as an onset first: {feed}"
            assert all(onsets[i] < events[i] for i in live_seen), feed
            page.get_by_test_id("event-item").nth(2).wait_for()
            assert page.locator("[data-testid=monitoring-banner]").count() == 1
            _shot(page, tmp_path, "live")

            # The simulator stops: the banner says monitoring is inactive, without a reload.
            sim.stop()
            page.get_by_test_id("inactive-banner").wait_for(timeout=20_000)
            banner = _text(page, "inactive-banner")
            assert "MONITORING INACTIVE" in banner and "dev-a" in banner, banner
            _shot(page, tmp_path, "inactive")

            # Review: "not a spasm" leaves the counts, "confirmed" is counted; both survive a reload.
            page.goto(base + "/p/e2e/p-0001/review")
            page.get_by_test_id("review-row").nth(2).wait_for()
            rows = page.get_by_test_id("review-row")
            # 3 injected spasms; a slow machine may let the simulator run past its 12 s scenario
            # before it is stopped, and the detector may see more: count what is there.
            n = rows.count()
            assert n >= 3
            assert _text(page, "count-spasms") == str(n) and _text(page, "count-unreviewed") == str(n)
            first_id = rows.nth(0).get_attribute("data-id")
            second_id = rows.nth(1).get_attribute("data-id")
            rows.nth(0).locator("input").fill("voluntary movement, patient reaching")
            rows.nth(0).get_by_test_id("mark-not-spasm").click()
            expect(page.get_by_test_id("count-spasms")).to_have_text(str(n - 1))
            rows.nth(1).get_by_test_id("mark-confirmed").click()
            expect(page.get_by_test_id("count-confirmed")).to_have_text("1")
            page.reload()
            page.get_by_test_id("review-row").nth(n - 1).wait_for()
            assert _text(page, "count-spasms") == str(n - 1)
            assert _text(page, "count-not-spasm") == "1"
            assert _text(page, "count-confirmed") == "1"
            assert _text(page, "count-unreviewed") == str(n - 2)
            row = page.locator(f"[data-testid=review-row][data-id='{first_id}']")
            assert "Not a spasm (dr-07)" in row.get_by_test_id("verdict").inner_text()
            assert row.locator("input").input_value() == "voluntary movement, patient reaching"
            row2 = page.locator(f"[data-testid=review-row][data-id='{second_id}']")
            assert "Confirmed" in row2.get_by_test_id("verdict").inner_text()
            # The audit log says who changed what.
            row.get_by_test_id("show-audit").click()
            expect(page.get_by_test_id("audit-row").first).to_contain_text("dr-07: Not a spasm")
            _shot(page, tmp_path, "review")

            # Timeline: the events in the day strip; one opens with its stored envelope.
            page.goto(base + "/p/e2e/p-0001/timeline")
            page.get_by_test_id("strip").wait_for()
            assert page.locator("[data-testid=strip] rect.ev").count() == n
            # Spasms a few seconds apart are one episode; opening it lists them; one shows its signal.
            assert page.get_by_test_id("episode").count() == 1
            page.get_by_test_id("episode").first.click()
            children = page.locator("[data-testid=episodes] tr.child:not(.hidden)")
            children.nth(n - 1).wait_for()
            assert children.count() == n
            children.nth(1).click()
            page.get_by_test_id("event-detail").locator("canvas").first.wait_for()
            _shot(page, tmp_path, "timeline")

            # Trends (from the store, reviews applied): n detected, 1 excluded, n - 1 counted.
            page.goto(base + "/p/e2e/p-0001/trends?days=7")
            summary = page.get_by_test_id("trend-summary").first
            summary.wait_for()
            assert summary.get_by_test_id("trend-total").inner_text() == str(n - 1)
            assert summary.get_by_test_id("trend-excluded").inner_text() == "1"
            page.locator("[data-testid=trend-summary] ~ .card canvas").first.wait_for()
            _shot(page, tmp_path, "trends")

            # Notices: the rate rule fired; it is in the view and on MQTT; an acknowledgement is logged.
            page.goto(base + "/notices")
            notice = page.get_by_test_id("notice").filter(has_text="more than 1 per hour").first
            notice.wait_for()
            notice.locator("input").fill("seen at the ward round")
            notice.get_by_role("button", name="Acknowledge").click()
            page.get_by_text("acknowledged by dr-07").first.wait_for()
            page.reload()
            page.get_by_text("seen at the ward round").first.wait_for()
            _shot(page, tmp_path, "notices")
            wait_until(lambda: bool(listener.messages), 10, "a notice on MQTT")
            topic, payload = listener.messages[0]
            assert topic == "neurospasm/v1/e2e/dashboard/notices"
            schema = json.loads((REPO / "docs" / "schemas" / "notice.v1.json").read_text())
            jsonschema.Draft202012Validator(schema).validate(payload)
            assert (payload["patient"], payload["device"], payload["rule"]) == ("p-0001", "dev-a", "rate")

            # The report downloads as a PDF whose pages render.
            page.goto(base + "/p/e2e/p-0001/report")
            with page.expect_download() as dl:
                page.get_by_test_id("report-pdf").click()
            pdf = tmp_path / "report.pdf"
            dl.value.save_as(pdf)
            assert pdf.read_bytes()[:5] == b"%PDF-"
            subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
            pngs = sorted(tmp_path.glob("page*.png"))
            assert pngs and all(p.stat().st_size > 1000 for p in pngs), pngs
            _shot(page, tmp_path, "report")

            # Another site's clinician sees nothing of this patient (and 404, not 403).
            other = ctx.request
            r = other.post(base + "/api/logout", headers={"X-CSRF-Token": "wrong"})
            assert r.status == 403  # state changes need the session's CSRF token
            login = json.dumps({"username": "dr-other", "password": PASSWORD})
            r = other.post(base + "/api/login", data=login, headers={"Content-Type": "application/json"})
            assert r.ok
            assert other.get(base + "/api/patients").json()["patients"] == []
            assert other.get(base + "/api/p/e2e/p-0001/events").status == 404
        assert not page_errors, page_errors
    finally:
        listener.done.set()
        listener.join(10)
        if gw is not None:
            gw.stop()
        if sim is not None:
            sim.stop()
        rc = dash.stop()
    assert rc == 0, dash.tail()
    assert PASSWORD not in dash.log.read_text()
