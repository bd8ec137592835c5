"""The dashboard's parts without a browser: access control, the live state, episodes, notices, assets.

The HTTP checks use Starlette's TestClient without the app's lifespan (no MQTT connection is made);
the live state is fed the exact payload bytes the gateway publishes (docs/mqtt.md), through the
same ``LiveHub.handle`` the MQTT subscriber calls. The browser test (test_dashboard_browser.py)
runs the whole chain with a real broker.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from dashboard.app.auth import AuthError, SessionStore, User, UserStore, hash_password, verify_password
from dashboard.app.config import DashboardConfig, DashboardConfigError, load_dashboard_config
from dashboard.app.episodes import counts, episodes, merge_events
from dashboard.app.live import LiveHub, monitoring_verdict
from dashboard.app.notices import NoticeCenter
from dashboard.app.server import Dashboard, create_app

REPO = Path(__file__).resolve().parents[2]
PREFIX = "neurospasm/v1"


def _status(device: str = "dev-a", **kw: Any) -> bytes:
    doc = {
        "schema": "neurospasm.status/1", "device": device, "state": "online", "monitoring": True,
        "updated": "2026-11-25T09:46:50.002Z", "battery_pct": 87, "contact": {"EMG L quad": True},
        "loss_pct": 0.01, "spool": {"bytes": 931}, "link": {"reconnects": 0},
    }  # fmt: skip
    doc.update(kw)
    return json.dumps(doc).encode()


def _event(i: int, onset: str, duration: float = 1.0, type_: str = "phasic") -> dict[str, Any]:
    return {
        "schema": "neurospasm.event/1", "id": f"ev-{i}", "device": "dev-a", "type": type_,
        "channel": "EMG L quad", "onset": onset, "offset": onset, "duration_s": duration,
        "peak_uv": 300.0, "mean_uv": 100.0, "baseline_uv": 3.0, "relative_amplitude": 100.0,
        "frequency_hz": None, "confidence": 1.0, "detector": {"version": "1", "config_hash": "x"},
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------- passwords


def test_passwords_are_salted_scrypt_hashes() -> None:
    a, b = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert a != b and a.startswith("scrypt$") and "s3cret" not in a  # a fresh salt each time
    assert verify_password("s3cret-pass", a) and verify_password("s3cret-pass", b)
    assert not verify_password("s3cret-pasS", a)
    assert not verify_password("s3cret-pass", "md5$abc")
    assert not verify_password("s3cret-pass", "garbage")


def test_users_file(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("dr-07", "long enough", "clinic-a")
    store.add("admin", "long enough", "*")
    assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600
    assert "long enough" not in (tmp_path / "users.json").read_text()
    user = store.authenticate("dr-07", "long enough")
    assert user is not None and user.site == "clinic-a" and user.may_see("clinic-a")
    assert not user.may_see("clinic-b")
    assert store.authenticate("dr-07", "wrong") is None
    assert store.authenticate("nobody", "long enough") is None
    assert User("admin", "*").may_see("anything")
    with pytest.raises(AuthError, match=r"users\.json: password for x: at least 8"):
        store.add("x", "short", "clinic-a")
    with pytest.raises(AuthError, match="username 'Dr Smith'"):
        store.add("Dr Smith", "long enough", "clinic-a")
    (tmp_path / "bad.json").write_text('{"users": {"a": {"site": "x"}}}')
    with pytest.raises(AuthError, match=r"bad\.json: users\.a: needs 'site' and 'password'"):
        UserStore(tmp_path / "bad.json").users()


def test_sessions_expire_when_idle() -> None:
    sessions = SessionStore(idle_s=0.2, max_age_s=60)
    s = sessions.create(User("dr-07", "clinic-a"))
    assert sessions.get(s.token) is s
    time.sleep(0.3)
    assert sessions.get(s.token) is None
    s2 = SessionStore(idle_s=60, max_age_s=0.2).create(User("dr-07", "clinic-a"))
    assert s2.csrf != s2.token


def test_sessions_have_an_absolute_lifetime() -> None:
    sessions = SessionStore(idle_s=60, max_age_s=0.2)
    s = sessions.create(User("dr-07", "clinic-a"))
    for _ in range(3):
        time.sleep(0.1)
        sessions.get(s.token)  # activity does not extend past max_age
    assert sessions.get(s.token) is None


# ---------------------------------------------------------------------------------------------- config


def test_config_from_a_gateway_toml(tmp_path: Path) -> None:
    gw = tmp_path / "gateway.toml"
    gw.write_text(
        '[gateway]\nsite = "clinic-a"\npatient = "p-1"\n[mqtt]\nhost = "broker"\nport = 8883\n'
        '[dashboard]\nbind = "0.0.0.0:9000"\nusers_file = "u.json"\n'
    )
    cfg = load_dashboard_config(str(gw))
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.default_site, cfg.store) == (
        "broker",
        8883,
        "clinic-a",
        f"gateway:{gw}",
    )
    assert not cfg.loopback and cfg.port == 9000
    assert load_dashboard_config(None, {"bind": "127.0.0.1:0"}).loopback
    bad = tmp_path / "bad.toml"
    bad.write_text('[dashboard]\nbind = "8080"\n')
    with pytest.raises(DashboardConfigError, match=r"bad\.toml: dashboard\.bind: .*HOST:PORT"):
        load_dashboard_config(str(bad))
    with pytest.raises(DashboardConfigError, match="timezone 'Mars/Olympus'"):
        load_dashboard_config(None, {"timezone": "Mars/Olympus"})


def test_mqtt_tls_and_password_settings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """[dashboard.mqtt] takes the gateway's TLS keys; relative paths are relative to the file."""
    conf = tmp_path / "etc"
    (conf / "certs").mkdir(parents=True)
    for name in ("ca.crt", "dash.crt", "dash.key"):
        (conf / "certs" / name).write_text("-----BEGIN CERTIFICATE-----\n")
    (conf / "secret").write_text("s3cret-value\n")
    f = conf / "dashboard.toml"
    f.write_text(
        '[dashboard.mqtt]\nport = 8883\nusername = "dash-a"\npassword_file = "secret"\n'
        '[dashboard.mqtt.tls]\nenabled = true\nca_file = "certs/ca.crt"\n'
        'cert_file = "certs/dash.crt"\nkey_file = "/abs/dash.key"\n'
    )
    m = load_dashboard_config(str(f), {"mqtt.host": "broker"}).mqtt
    assert (m.host, m.port, m.username, m.secret()) == ("broker", 8883, "dash-a", "s3cret-value")
    assert (m.tls.ca_file, m.tls.cert_file, m.tls.key_file) == (
        conf / "certs" / "ca.crt", conf / "certs" / "dash.crt", Path("/abs/dash.key")
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"dashboard\.mqtt\.tls\.key_file: cannot read /abs/dash\.key"):
        m.tls_parameters()
    ok = m.model_copy(update={"tls": m.tls.model_copy(update={"key_file": conf / "certs" / "dash.key"})})
    params = ok.tls_parameters()
    assert params is not None and params.ca_certs == str(conf / "certs" / "ca.crt")
    assert (params.certfile, params.keyfile) == (
        str(conf / "certs" / "dash.crt"),
        str(conf / "certs" / "dash.key"),
    )
    assert load_dashboard_config(None).mqtt.tls_parameters() is None  # plain TCP by default
    # A gateway's own config: its [mqtt] and [mqtt.tls] tables are the dashboard's too.
    gw = conf / "gateway.toml"
    gw.write_text(
        '[gateway]\nsite = "a"\npatient = "p"\n[mqtt]\nhost = "b"\npassword_file = "secret"\n'
        '[mqtt.tls]\nenabled = true\nca_file = "certs/ca.crt"\n'
    )
    g = load_dashboard_config(str(gw)).mqtt
    assert g.tls.enabled and g.tls.ca_file == conf / "certs" / "ca.crt" and g.secret() == "s3cret-value"
    # Bad input: one line naming the file and the key.
    f.write_text("[dashboard.mqtt.tls]\nenable = true\n")
    with pytest.raises(DashboardConfigError, match=r"dashboard\.toml: dashboard\.mqtt\.tls\.enable: "):
        load_dashboard_config(str(f))
    f.write_text('[dashboard.mqtt]\npassword = "x"\npassword_file = "secret"\n')
    with pytest.raises(DashboardConfigError, match=r"dashboard\.mqtt: .*both set"):
        load_dashboard_config(str(f))
    f.write_text('[dashboard.mqtt.tls]\nca_file = "certs/ca.crt"\n')
    with caplog.at_level("WARNING", "neurospasm.dashboard"):
        assert load_dashboard_config(str(f)).mqtt.tls_parameters() is None
    assert "dashboard.mqtt.tls.ca_file is set but dashboard.mqtt.tls.enabled = false" in caplog.text
    f.write_text('[dashboard.mqtt]\npassword_file = "missing"\n')
    with pytest.raises(ValueError, match=r"dashboard\.mqtt\.password_file: cannot read .*missing"):
        load_dashboard_config(str(f)).mqtt.secret()


# ---------------------------------------------------------------------------------------------- HTTP


def _app(tmp_path: Path, users: bool = True, bind: str = "127.0.0.1:8080") -> tuple[TestClient, Dashboard]:
    users_file = tmp_path / "users.json"
    if users:
        store = UserStore(users_file)
        store.add("dr-a", "password-a", "site-a")
        store.add("dr-b", "password-b", "site-b")
    cfg = DashboardConfig.model_validate(
        {"bind": bind, "users_file": str(users_file) if users else None, "state_dir": str(tmp_path / "st")}
    )
    dash = Dashboard(cfg)
    dash.hub.handle(f"{PREFIX}/site-a/p-1/dev-a/status", _status())
    dash.hub.handle(f"{PREFIX}/site-b/p-2/dev-b/status", _status("dev-b"))
    return TestClient(create_app(cfg, dash), base_url="http://127.0.0.1"), dash


def _login(client: TestClient, user: str, password: str) -> str:
    r = client.post("/api/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=" in cookie, cookie
    return str(r.json()["csrf"])


def test_login_sessions_csrf_and_site_scoping(tmp_path: Path) -> None:
    client, dash = _app(tmp_path)
    assert client.get("/api/patients").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.post("/api/login", json={"username": "dr-a", "password": "nope"}).status_code == 401
    csrf = _login(client, "dr-a", "password-a")
    patients = client.get("/api/patients").json()["patients"]
    assert [(p["site"], p["patient"]) for p in patients] == [("site-a", "p-1")]
    assert patients[0]["monitoring"] is True
    # another site's patient does not exist for this user
    assert client.get("/api/p/site-b/p-2/events").status_code == 404
    assert client.get("/api/p/site-a/p-1/events").status_code == 200
    # state changes need the CSRF token of the session
    dash.hub.handle(
        f"{PREFIX}/site-a/p-1/dev-a/events", json.dumps(_event(1, "2026-11-25T09:46:42.010Z")).encode()
    )
    url = "/api/p/site-a/p-1/event/ev-1/review"
    assert client.post(url, json={"verdict": "confirmed"}).status_code == 403
    assert client.post(url, json={"verdict": "confirmed"}, headers={"X-CSRF-Token": "x"}).status_code == 403
    assert client.post(url, json={"verdict": "maybe"}, headers={"X-CSRF-Token": csrf}).status_code == 400
    r = client.post(url, json={"verdict": "not_spasm", "note": "reaching"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["review"]["reviewer"] == "dr-a"
    assert client.post("/api/p/site-a/p-1/event/ev-404/review", json={"verdict": "unsure"},
                       headers={"X-CSRF-Token": csrf}).status_code == 404  # fmt: skip
    audit = client.get("/api/p/site-a/p-1/event/ev-1/audit").json()["audit"]
    assert [(a["who"], a["new"]["verdict"]) for a in audit] == [("dr-a", "not_spasm")]
    # an event of another site's patient is not reachable through a patient this user may see
    dash.hub.handle(f"{PREFIX}/site-b/p-2/dev-b/events", json.dumps({**_event(2, "2026-11-25T09:50:00.000Z"),
                    "device": "dev-b"}).encode())  # fmt: skip
    for path in ("/api/p/site-a/p-1/event/ev-2", "/api/p/site-a/p-1/event/ev-2/audit"):
        assert client.get(path).status_code == 404
    r = client.post(
        "/api/p/site-a/p-1/event/ev-2/review", json={"verdict": "confirmed"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 404
    # logout ends the session
    assert client.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/api/patients").status_code == 401
    # the other clinician sees the other site only
    _login(client, "dr-b", "password-b")
    assert [p["patient"] for p in client.get("/api/patients").json()["patients"]] == ["p-2"]


def test_failed_logins_are_throttled_per_user(tmp_path: Path) -> None:
    client, _ = _app(tmp_path)
    for _ in range(5):
        assert client.post("/api/login", json={"username": "dr-a", "password": "guess"}).status_code == 401
    r = client.post("/api/login", json={"username": "dr-a", "password": "password-a"})
    assert r.status_code == 429 and "too many failed logins" in r.json()["error"]
    _login(client, "dr-b", "password-b")  # another user is not affected


def test_loopback_without_users_is_the_local_user(tmp_path: Path) -> None:
    client, _ = _app(tmp_path, users=False)
    me = client.get("/api/me").json()
    assert me["user"] == "local" and me["login_required"] is False
    assert me["broker"]["connected"] is False  # (no lifespan here: the MQTT subscriber never ran)
    assert len(client.get("/api/patients").json()["patients"]) == 2
    # still CSRF-protected: a cross-site form cannot post
    r = client.post("/api/p/site-a/p-1/interventions", json={"kind": "dose change"})
    assert r.status_code == 403
    r = client.post("/api/p/site-a/p-1/interventions", json={"kind": "baclofen 10 mg -> 15 mg"},
                    headers={"X-CSRF-Token": me["csrf"]})  # fmt: skip
    assert r.status_code == 200
    listed = client.get("/api/p/site-a/p-1/interventions").json()["interventions"]
    assert [i["kind"] for i in listed] == ["baclofen 10 mg -> 15 mg"]
    # no store configured: history routes say so instead of pretending there is nothing
    assert client.get("/api/p/site-a/p-1/trends").status_code == 503
    r = client.get("/api/p/site-a/p-1/report.pdf")
    assert r.status_code == 503 and "store" in r.json()["error"]


def test_not_loopback_needs_a_users_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"0\.0\.0\.0:8080: not loopback, so a users file is required"):
        _app(tmp_path, users=False, bind="0.0.0.0:8080")


def test_a_broken_users_file_stops_the_start_not_every_login(tmp_path: Path) -> None:
    """Broken JSON or bytes that are not UTF-8: the dashboard does not start (one AuthError naming
    the file); broken after the start (edited by hand), a login gets 503 and the log says why,
    never a 500 with a traceback."""
    for name, data in (("broken.json", b"{broken"), ("bin.json", b"\xff\xfe")):
        path = tmp_path / name
        path.write_bytes(data)
        cfg = DashboardConfig.model_validate({"users_file": str(path), "state_dir": str(tmp_path / "st")})
        with pytest.raises(AuthError, match=f"{name}: not a readable users file"):
            Dashboard(cfg)
    client, _ = _app(tmp_path)
    (tmp_path / "users.json").write_text("{broken")
    r = client.post("/api/login", json={"username": "dr-a", "password": "password-a"})
    assert r.status_code == 503 and "users file cannot be read" in r.json()["error"], r.text


def test_a_hostile_request_body_is_a_400(tmp_path: Path) -> None:
    """A login body nested 100 000 deep, or with an integer of 5000 digits, is a 400 (it was a 500:
    Python's parser raises RecursionError and ValueError, not its decode error)."""
    client, _ = _app(tmp_path)
    for body in ("[" * 100_000, '{"username": ' + "9" * 5000 + "}"):
        r = client.post("/api/login", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "must be JSON" in r.json()["error"], r.text


def test_assets_are_local(tmp_path: Path) -> None:
    client, _ = _app(tmp_path, users=False)
    r = client.get("/")
    html = r.text
    assert 'src="/static/js/app.js"' in html
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    for path in ("/static/js/app.js", "/static/js/charts.js", "/static/vendor/uplot/uPlot.esm.js"):
        assert client.get(path).status_code == 200
    # Nothing is loaded from elsewhere: no src/href/import/url()/fetch to an http(s) address.
    external = re.compile(
        r"""(src|href)\s*=\s*["']https?:|from\s+["']https?:|url\(\s*["']?https?:|fetch\(\s*["'`]https?:"""
    )
    checked = 0
    for f in (REPO / "dashboard" / "static").rglob("*"):
        if f.suffix in (".html", ".css", ".js"):
            checked += 1
            assert not external.search(f.read_text()), f"{f}: loads an external URL (clinics may be offline)"
    assert checked >= 6


# ---------------------------------------------------------------------------------------------- live state


def test_live_state_dedupes_and_judges_monitoring() -> None:
    hub = LiveHub("127.0.0.1", 1, stale_after_s=5)
    q = hub.subscribe(frozenset({"site-a"}))
    other = hub.subscribe(frozenset({"site-b"}))
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/status", _status())
    ev = json.dumps(_event(1, "2026-11-25T09:46:42.010Z")).encode()
    onset_doc = {"schema": "neurospasm.onset/1", "id": "ev-1", "device": "dev-a", "channel": "EMG L quad",
                 "onset": "2026-11-25T09:46:42.010Z", "amplitude_uv": 41.0, "baseline_uv": 2.7}  # fmt: skip
    onset = json.dumps(onset_doc).encode()
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/onsets", onset)
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/events", ev)
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/events", ev)  # at-least-once: a re-delivery
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/events", b"{not json")
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/unknown", ev)
    hub.handle("other/prefix/site-a/p-1/dev-a/events", ev)
    dev = hub.devices[("site-a", "p-1", "dev-a")]
    assert [i["kind"] for i in dev.recent] == ["event", "onset"]
    types = [q.get_nowait()["type"] for _ in range(q.qsize())]
    assert types == ["device", "onset", "event"]
    assert other.qsize() == 0  # another site's browser hears nothing

    now = time.time()
    assert monitoring_verdict(dev, 5, now) == (True, "monitoring")
    assert monitoring_verdict(dev, 5, now + 6)[1] == "no data for 6 s (stale)"
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/status", _status(contact={"EMG L quad": False}))
    assert monitoring_verdict(dev, 5, time.time()) == (
        False, "electrode contact lost (not worn?): EMG L quad"
    )  # fmt: skip
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/status", b'{"schema": "neurospasm.status/1", "device": "dev-a", '
               b'"state": "offline", "monitoring": false}')  # fmt: skip
    active, reason = monitoring_verdict(dev, 5, time.time())
    assert not active and "gateway offline" in reason
    assert hub.summaries(frozenset({"site-b"})) == []


# ---------------------------------------------------------------------------------------------- episodes


def test_episodes_group_bursts_and_counts_follow_reviews() -> None:
    evs = [
        _event(1, "2026-11-25T09:00:00.000Z", 1.0),
        _event(2, "2026-11-25T09:00:10.000Z", 0.2, "twitch"),
        _event(3, "2026-11-25T09:00:35.000Z", 2.0),  # 24.8 s after the last end: same episode
        _event(4, "2026-11-25T09:05:00.000Z", 1.0, "clonus"),  # a quiet 4 min: a new episode
    ]
    merged = merge_events([{**evs[0], "source": "store"}], evs)
    assert [e["id"] for e in merged] == ["ev-1", "ev-2", "ev-3", "ev-4"] and merged[0]["source"] == "store"
    eps = episodes(merged)
    assert [ep["events"] for ep in eps] == [["ev-1", "ev-2", "ev-3"], ["ev-4"]]
    assert eps[0]["duration_s"] == 37.0 and eps[0]["types"] == {"phasic": 2, "twitch": 1}
    merged[0]["review"] = {"verdict": "not_spasm"}
    merged[1]["review"] = {"verdict": "unsure"}
    merged[2]["review"] = {"verdict": "confirmed"}
    c = counts(merged)
    assert c == {"spasms": 2, "by_type": {"clonus": 1, "phasic": 1}, "detected": 4, "confirmed": 1,
                 "not_spasm": 1, "unsure": 1, "unreviewed": 1}  # fmt: skip


# ---------------------------------------------------------------------------------------------- notices


def test_notices_raise_once_and_the_ack_log_survives(tmp_path: Path) -> None:
    hub = LiveHub("127.0.0.1", 1, stale_after_s=5)
    q = hub.subscribe(None)
    center = NoticeCenter(hub, tmp_path, {"inactive_minutes": 1, "tonic_longer_than_s": 20})
    hub.handle(f"{PREFIX}/site-a/p-1/dev-a/status", b'{"schema": "neurospasm.status/1", "device": "dev-a", '
               b'"state": "offline", "monitoring": false}')  # fmt: skip
    t0 = time.time()
    center.evaluate_live(t0)
    center.evaluate_live(t0 + 30)
    assert center.notices == {}
    center.evaluate_live(t0 + 61)
    center.evaluate_live(t0 + 120)  # the same stretch: not raised again
    tonic = {**_event(9, "2026-11-25T09:00:00.000Z", 25.0, "tonic"), "kind": "event", "site": "site-a",
             "patient": "p-1"}  # fmt: skip
    center.observe_event(tonic, history=False)
    center.observe_event(tonic, history=False)
    rules = sorted(n["rule"] for n in center.notices.values())
    assert rules == ["inactive", "tonic_long"], center.notices
    assert any("not mean no spasms" in n["text"] for n in center.notices.values())
    pushed = [m for m in (q.get_nowait() for _ in range(q.qsize())) if m["type"] == "notice"]
    assert len(pushed) == 2
    nid = next(iter(center.notices))
    center.acknowledge(nid, "dr-07", "called the family")
    again = NoticeCenter(LiveHub("127.0.0.1", 1), tmp_path, {})
    assert again.notices[nid]["acks"][0]["by"] == "dr-07"
    assert again.notices[nid]["acks"][0]["note"] == "called the family"
    assert len(again.notices) == 2
    with pytest.raises(ValueError, match=r"dashboard\.notices: unknown key 'per_day'"):
        NoticeCenter(hub, tmp_path, {"per_day": 3})


# ---------------------------------------------------------------------------------------------- vendored JS


def test_vendored_js_matches_the_lock_file() -> None:
    """dashboard/static/vendor is what scripts/vendor-js copied from the locked npm packages."""
    lock = json.loads((REPO / "dashboard" / "web" / "package-lock.json").read_text())
    manifest = json.loads((REPO / "dashboard" / "static" / "vendor" / "MANIFEST.json").read_text())
    package = json.loads((REPO / "dashboard" / "web" / "package.json").read_text())
    assert set(manifest) == set(package["dependencies"])
    for name, entry in manifest.items():
        locked = lock["packages"][f"node_modules/{name}"]
        assert (entry["version"], entry["integrity"]) == (locked["version"], locked["integrity"])
        assert package["dependencies"][name] == locked["version"]  # pinned exactly
        folder = REPO / "dashboard" / "static" / "vendor" / name
        assert (folder / "LICENSE").read_text().strip(), f"{name}: licence missing"
        on_disk = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.iterdir()}
        assert on_disk == entry["files"], (
            f"{name}: vendored files differ from MANIFEST.json (run scripts/vendor-js)"
        )
        assert json.loads((folder / "package.json").read_text())["version"] == locked["version"]


def test_adduser_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.commands.cli import main

    users = tmp_path / "users.json"
    argv = ["dashboard", "adduser", "dr-9", "--users", str(users), "--site", "clinic-a", "--password-stdin"]
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough pw\n"))
    assert main(argv) == 0
    assert "user dr-9 (site clinic-a) saved" in capsys.readouterr().out
    user = UserStore(users).authenticate("dr-9", "long enough pw")
    assert user is not None and user.site == "clinic-a"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(argv) == 2
    assert "at least 8 characters" in capsys.readouterr().err


def test_notice_schema_and_the_docs_example(tmp_path: Path) -> None:
    import jsonschema

    schema = json.loads((REPO / "docs" / "schemas" / "notice.v1.json").read_text())
    v = jsonschema.Draft202012Validator(schema)
    text = (REPO / "docs" / "mqtt.md").read_text()
    example = re.search(r"Notice \(`\{prefix\}/\{site\}/dashboard/notices`.*?```json\n(.*?)\n```", text, re.S)
    assert example, "docs/mqtt.md: the notice example is missing"
    v.validate(json.loads(example.group(1)))
    # what the dashboard makes validates too (without its acknowledgements, which stay local)
    hub = LiveHub("127.0.0.1", 1)
    center = NoticeCenter(hub, tmp_path, {"tonic_longer_than_s": 5})
    tonic = {
        **_event(1, "2026-11-25T09:00:00.000Z", 8.0, "tonic"),
        "kind": "event",
        "site": "s",
        "patient": "p",
    }
    center.observe_event(tonic, history=False)
    (notice,) = center.notices.values()
    v.validate({k: val for k, val in notice.items() if k != "acks"})
    assert not v.is_valid({**{k: val for k, val in notice.items() if k != "acks"}, "patient": "Jane Doe"})


def test_deploy_files() -> None:
    import configparser

    cfg = load_dashboard_config(str(REPO / "deploy" / "dashboard.example.toml"))
    assert not cfg.loopback and cfg.users_file and cfg.https_only and cfg.store
    assert cfg.notices == {"inactive_minutes": 10, "tonic_longer_than_s": 60, "spasms_per_hour_above": 30}
    NoticeCenter(LiveHub("127.0.0.1", 1), Path("/nonexistent"), cfg.notices)  # the rules are valid
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "deploy" / "systemd" / "neurospasm-dashboard.service")
    svc = unit["Service"]
    assert "neurospasm dashboard --config" in svc["ExecStart"]
    assert svc["NoNewPrivileges"] in ("yes", "true") and svc["ProtectSystem"] == "strict"
    assert svc.get("DynamicUser") == "yes" or svc.get("User", "root") != "root"
