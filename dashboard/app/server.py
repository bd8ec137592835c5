"""The dashboard's ASGI application (Starlette): JSON APIs, Server-Sent Events, the pages.

Routes (all ``/api`` routes answer JSON; ``{site}/{patient}`` are pseudonyms):

    GET  /                      the patients page            GET /p/{site}/{patient}/{view}  a patient's view
    GET  /login                 the login page               (views: live, timeline, review, trends, report)
    GET  /notices               the notices page
    POST /api/login             {username, password} -> session cookie
    POST /api/logout
    GET  /api/me                user, site, csrf token, whether login is required
    GET  /api/patients          every visible patient with its devices' state and today's counts
    GET  /api/stream            Server-Sent Events: device, live, onset, event, gap, notice
    GET  /api/p/{site}/{patient}/live          live snapshot (recent envelope, recent items)
    GET  /api/p/{site}/{patient}/events        ?start&end  events (+reviews), episodes, counts, gaps
    GET  /api/p/{site}/{patient}/event/{id}    one event with envelope and accelerometer around it
    GET  /api/p/{site}/{patient}/series        ?device&kind&start&end  downsampled history
    GET  /api/p/{site}/{patient}/activity      ?device&minutes (or start&end)  activity spans
    POST /api/p/{site}/{patient}/event/{id}/review   {verdict, note}
    GET  /api/p/{site}/{patient}/event/{id}/audit    every review of the event (who, when, what)
    GET  /api/p/{site}/{patient}/labels.{json,csv}   reviewed events as labels for tuning
    GET  /api/p/{site}/{patient}/trends        ?days
    GET  /api/p/{site}/{patient}/interventions   POST the same to add one {kind, text, at}
    GET  /api/p/{site}/{patient}/report.{html,pdf}  ?start&end
    GET  /api/notices           POST /api/notices/{id}/ack {note}

Why Starlette: a small, typed, well-kept ASGI toolkit that serves static files and streaming
responses itself; blocking store queries run in worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboard.app import backends
from dashboard.app.auth import LOCAL_USER, AuthError, Session, SessionStore, User, UserStore
from dashboard.app.config import DashboardConfig
from dashboard.app.episodes import counts, episodes, merge_events
from dashboard.app.live import CLOSE, LiveHub
from dashboard.app.notices import NoticeCenter

log = logging.getLogger("neurospasm.dashboard")

STATIC = Path(__file__).resolve().parent.parent / "static"
COOKIE = "ns_session"
VERDICTS = ("confirmed", "not_spasm", "unsure")
VIEWS = ("live", "timeline", "review", "trends", "report")

__all__ = ["Dashboard", "create_app"]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parse_time(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HttpError(400, f"bad time {value!r}: use ISO 8601, e.g. 2026-11-25T09:00:00Z") from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class Dashboard:
    """Everything the routes share: config, users, sessions, the live hub, notices, the backends."""

    def __init__(self, cfg: DashboardConfig) -> None:
        self.cfg = cfg
        self.state_dir = Path(cfg.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.users = UserStore(Path(cfg.users_file)) if cfg.users_file else None
        if self.users is not None:
            self.users.users()  # a broken users file stops the start (AuthError), not every login
        if not cfg.loopback and self.users is None:
            raise ValueError(
                f"dashboard.bind {cfg.bind}: not loopback, so a users file is required "
                "(dashboard.users_file; create users with `neurospasm dashboard adduser`)"
            )
        self.login_required = self.users is not None
        self.sessions = SessionStore(cfg.session_idle_min * 60, cfg.session_max_h * 3600)
        self.hub = LiveHub(
            cfg.mqtt.host,
            cfg.mqtt.port,
            cfg.mqtt.topic_prefix,
            stale_after_s=cfg.stale_after_s,
            username=cfg.mqtt.username,
            password=cfg.mqtt.secret(),
            tls=cfg.mqtt.tls_parameters(),
            tls_insecure=cfg.mqtt.tls.insecure if cfg.mqtt.tls.enabled else None,
            client_id=f"neurospasm-dashboard-{secrets.token_hex(3)}",
        )
        self.notices = NoticeCenter(self.hub, self.state_dir, cfg.notices)
        self.hub.listeners.append(self._on_item)
        self.data = backends.Backends.open(cfg, self.state_dir)
        self._local_csrf = secrets.token_urlsafe(24)
        self._failures: dict[str, list[float]] = {}
        self._devices_cache: list[tuple[str | None, str, str]] = []
        self._devices_at = -1e9
        self._tasks: list[asyncio.Task[None]] = []

    def _on_item(self, item: dict[str, Any]) -> None:
        if item["kind"] == "event":
            self.notices.observe_event(item, history=self.data.history is not None)

    async def start(self) -> None:
        await self.hub.start()
        self._tasks.append(asyncio.create_task(self._notice_loop(), name="dashboard-notices"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.hub.stop()
        self.data.close()

    async def _notice_loop(self) -> None:
        last = 0.0
        while True:
            await asyncio.sleep(min(2.0, self.cfg.notice_eval_s))
            try:
                if self.data.history is None:
                    self.notices.evaluate_live()
                elif time.monotonic() - last >= self.cfg.notice_eval_s:
                    last = time.monotonic()
                    devices = await asyncio.to_thread(self.stored_devices)
                    await asyncio.to_thread(
                        self.notices.evaluate_history, self.data.history, self.data.reviews_store, devices
                    )
                await self.notices.flush()
            except Exception as exc:  # a store or rule failure must not stop the live view
                log.warning("dashboard: notice rules: %s", exc)

    # ------------------------------------------------------------------ access

    def session(self, request: Request) -> Session | None:
        if not self.login_required:
            return Session("local", LOCAL_USER, self._local_csrf, 0.0, 0.0)
        return self.sessions.get(request.cookies.get(COOKIE))

    def user(self, request: Request) -> User:
        s = self.session(request)
        if s is None:
            raise HttpError(401, "login required")
        if request.method not in ("GET", "HEAD"):
            sent = request.headers.get("x-csrf-token", "")
            if not secrets.compare_digest(sent, s.csrf):
                raise HttpError(403, "missing or wrong CSRF token (X-CSRF-Token header)")
        return s.user

    DEVICES_TTL_S = 10.0

    #: Failed logins per username allowed in ``LOGIN_WINDOW_S`` before that name is refused for
    #: the rest of the window (slows password guessing; the scrypt cost does the rest).
    LOGIN_FAILURES = 5
    LOGIN_WINDOW_S = 60.0

    def login_throttled(self, username: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(username, []) if now - t < self.LOGIN_WINDOW_S]
        self._failures[username] = recent
        return len(recent) >= self.LOGIN_FAILURES

    def login_failed(self, username: str) -> None:
        self._failures.setdefault(username, []).append(time.monotonic())

    def visible_sites(self, user: User) -> frozenset[str] | None:
        return None if user.site == "*" else frozenset({user.site})

    def patient_access(self, request: Request) -> tuple[User, str, str]:
        user = self.user(request)
        site, patient = request.path_params["site"], request.path_params["patient"]
        if not user.may_see(site):
            raise HttpError(404, "no such patient")  # 404, not 403: do not confirm it exists
        return user, site, patient

    def stored_devices(self) -> list[tuple[str, str, str]]:
        """(site, patient, device) of the store; a store that does not know sites (the gateway's
        series carry patient and device tags only) gets the site the live side saw for that
        device, else the configured default site."""
        seen = {(p, d): s for s, p, d in self.hub.devices}
        now = time.monotonic()
        if now - self._devices_at > self.DEVICES_TTL_S:
            # A GROUP BY over weeks of status points: cached briefly, several routes ask per request.
            self._devices_cache = self.data.devices()
            self._devices_at = now
        out = []
        for site, patient, device in self._devices_cache:
            site = site or seen.get((patient, device)) or self.cfg.default_site or "local"
            out.append((site, patient, device))
        return out

    def devices_of(self, site: str, patient: str) -> list[str]:
        live = {d.device for d in self.hub.patient_devices(site, patient)}
        stored = {d for s, p, d in self.stored_devices() if s == site and p == patient}
        return sorted(live | stored)


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _route(
    dash: Dashboard, fn: Callable[[Dashboard, Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(dash, request)
        except HttpError as exc:
            if exc.status == 401 and not request.url.path.startswith("/api/"):
                return RedirectResponse("/login", status_code=303)
            return _json({"error": exc.message}, exc.status)
        except backends.BackendMissing as exc:
            return _json({"error": str(exc)}, 503)
        except ValueError as exc:  # refused by the data side (bad verdict, bad interval): one line
            return _json({"error": str(exc)}, 400)

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, RecursionError) as exc:  # (JSON, UTF-8, a huge integer; nested too deep)
        raise HttpError(400, "request body must be JSON") from exc
    if not isinstance(data, dict):
        raise HttpError(400, "request body must be a JSON object")
    return data


# ---------------------------------------------------------------------------------------------- pages


async def page(dash: Dashboard, request: Request) -> Response:
    view = request.path_params.get("view")
    if view is not None and view not in VIEWS:
        raise HttpError(404, "no such view")
    if dash.session(request) is None:
        raise HttpError(401, "login required")
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def login_page(dash: Dashboard, request: Request) -> Response:
    return FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------------------------------------- auth


async def api_login(dash: Dashboard, request: Request) -> Response:
    if dash.users is None:
        return _json({"ok": True, "login_required": False})
    body = await _body(request)
    name = str(body.get("username", ""))[:64]
    if dash.login_throttled(name):
        raise HttpError(429, "too many failed logins for this user: wait a minute")
    try:
        user = await asyncio.to_thread(dash.users.authenticate, name, str(body.get("password", "")))
    except AuthError as exc:  # the file was broken after the start (edited by hand)
        log.error("dashboard: %s", exc)
        raise HttpError(503, "the users file cannot be read: see the dashboard's log") from None
    if user is None:
        dash.login_failed(name)
        log.info("dashboard: failed login for %r", name)
        raise HttpError(401, "wrong username or password")
    s = dash.sessions.create(user)
    resp = _json({"ok": True, "user": user.username, "site": user.site, "csrf": s.csrf})
    resp.set_cookie(
        COOKIE,
        s.token,
        max_age=int(dash.sessions.max_age_s),
        httponly=True,
        samesite="strict",
        secure=dash.cfg.https_only or request.url.scheme == "https",
    )
    return resp


async def api_logout(dash: Dashboard, request: Request) -> Response:
    dash.user(request)  # CSRF-checked like any state change
    dash.sessions.drop(request.cookies.get(COOKIE))
    resp = _json({"ok": True})
    resp.delete_cookie(COOKIE)
    return resp


async def api_me(dash: Dashboard, request: Request) -> Response:
    s = dash.session(request)
    if s is None:
        return _json({"user": None, "login_required": True}, 401)
    return _json(
        {
            "user": s.user.username,
            "site": s.user.site,
            "csrf": s.csrf,
            "login_required": dash.login_required,
            "stale_after_s": dash.cfg.stale_after_s,
            "features": dash.data.features(),
            "broker": dash.hub.broker_state(),
        }
    )


# ---------------------------------------------------------------------------------------------- patients


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


async def api_patients(dash: Dashboard, request: Request) -> Response:
    user = dash.user(request)
    sites = dash.visible_sites(user)
    devices: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for summary in dash.hub.summaries(sites):
        devices.setdefault((summary["site"], summary["patient"]), []).append(summary)
    for site, patient, device in await asyncio.to_thread(dash.stored_devices):
        if sites is not None and site not in sites:
            continue
        known = {d["device"] for d in devices.get((site, patient), [])}
        if device not in known:
            devices.setdefault((site, patient), []).append(
                {
                    "site": site,
                    "patient": patient,
                    "device": device,
                    "state": "unknown",
                    "monitoring": False,
                    "reason": "no live status from this device (history only)",
                }
            )
    now = datetime.now(UTC)
    out = []
    for (site, patient), devs in sorted(devices.items()):
        evs = await _patient_events(dash, site, patient, _day_start(now), now + timedelta(minutes=1))
        out.append(
            {
                "site": site,
                "patient": patient,
                "monitoring": all(d["monitoring"] for d in devs) and bool(devs),
                "devices": devs,
                "today": counts(evs),
                "last_event": evs[-1] if evs else None,
            }
        )
    return _json({"patients": out, "generated": now.isoformat()})


async def _patient_events(
    dash: Dashboard, site: str, patient: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    devs = dash.devices_of(site, patient)
    stored = await asyncio.to_thread(dash.data.events, devs, start, end)
    live = [
        e
        for d in dash.hub.patient_devices(site, patient)
        for e in d.recent
        if e["kind"] == "event" and start <= _parse_time(e["onset"], start) < end
    ]
    merged = merge_events(stored, [{k: v for k, v in e.items() if k != "kind"} for e in live])
    reviews = await asyncio.to_thread(dash.data.latest_reviews, [e["id"] for e in merged])
    for e in merged:
        e["review"] = reviews.get(e["id"])
    return merged


# ---------------------------------------------------------------------------------------------- live


async def api_stream(dash: Dashboard, request: Request) -> Response:
    user = dash.user(request)
    sites = dash.visible_sites(user)
    q = dash.hub.subscribe(sites)

    async def gen() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            broker = {"type": "broker", "data": dash.hub.broker_state()}
            yield f"event: broker\ndata: {json.dumps(broker)}\n\n".encode()
            for s in dash.hub.summaries(sites):
                yield f"event: device\ndata: {json.dumps({'type': 'device', 'data': s})}\n\n".encode()
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), 10.0)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if msg is CLOSE:
                    break  # the server is stopping
                yield f"event: {msg['type']}\ndata: {json.dumps(msg)}\n\n".encode()
        finally:
            dash.hub.unsubscribe(q)

    return StreamingResponse(
        gen(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def api_live(dash: Dashboard, request: Request) -> Response:
    _, site, patient = dash.patient_access(request)
    seconds = min(600.0, float(request.query_params.get("seconds", "60")))
    out = []
    for d in dash.hub.patient_devices(site, patient):
        if not d.live:
            cutoff = 0
        else:
            cutoff = d.live[-1]["t_ms"] - seconds * 1000
        out.append(
            {
                "summary": d.summary(dash.hub.stale_after_s),
                "live": [s for s in d.live if s["t_ms"] >= cutoff],
                "recent": list(d.recent)[:50],
            }
        )
    return _json({"site": site, "patient": patient, "devices": out})


# ---------------------------------------------------------------------------------------------- history


async def api_events(dash: Dashboard, request: Request) -> Response:
    _, site, patient = dash.patient_access(request)
    now = datetime.now(UTC)
    end = _parse_time(request.query_params.get("end"), now + timedelta(minutes=1))
    start = _parse_time(request.query_params.get("start"), end - timedelta(hours=24))
    if end <= start:
        raise HttpError(400, "end must be after start")
    evs = await _patient_events(dash, site, patient, start, end)
    devs = dash.devices_of(site, patient)
    gaps = await asyncio.to_thread(dash.data.gaps, devs, start, end)
    live_gaps = [
        {k: v for k, v in e.items() if k != "kind"}
        for d in dash.hub.patient_devices(site, patient)
        for e in d.recent
        if e["kind"] == "gap"
    ]
    seen = {g["id"] for g in gaps}
    gaps += [g for g in live_gaps if g["id"] not in seen and start <= _parse_time(g["start"], start) < end]
    return _json(
        {
            "site": site,
            "patient": patient,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "events": evs,
            "episodes": episodes(evs),
            "counts": counts(evs),
            "gaps": sorted(gaps, key=lambda g: g["start"]),
            "devices": devs,
            "history_error": dash.data.history_error,
        }
    )


async def _event_of(dash: Dashboard, site: str, patient: str, event_id: str) -> dict[str, Any]:
    """The event ``event_id`` of this patient (store first, then what arrived live), else 404.
    Every per-event route goes through here, so an id of another site's patient reveals nothing."""
    devices = set(dash.devices_of(site, patient))
    ev = await asyncio.to_thread(dash.data.event, event_id)
    if ev is not None and ev.get("patient") == patient and ev.get("device") in devices:
        return ev
    for d in dash.hub.patient_devices(site, patient):
        for e in d.recent:
            if e["kind"] == "event" and e["id"] == event_id:
                return {k: v for k, v in e.items() if k != "kind"}
    raise HttpError(404, "no such event")


async def api_event(dash: Dashboard, request: Request) -> Response:
    _, site, patient = dash.patient_access(request)
    event_id = request.path_params["event_id"]
    ev = await _event_of(dash, site, patient, event_id)
    onset = _parse_time(ev["onset"], datetime.now(UTC))
    before = float(request.query_params.get("before_s", "10"))
    after = float(request.query_params.get("after_s", "10"))
    start = onset - timedelta(seconds=before)
    end = onset + timedelta(seconds=float(ev.get("duration_s") or 0.0) + after)
    env, acc = await asyncio.gather(
        asyncio.to_thread(dash.data.series, ev["device"], "envelope", start, end),
        asyncio.to_thread(dash.data.series, ev["device"], "acc", start, end),
    )
    reviews = await asyncio.to_thread(dash.data.latest_reviews, [event_id])
    return _json({"event": {**ev, "review": reviews.get(event_id)}, "envelope": env, "acc": acc})


async def api_series(dash: Dashboard, request: Request) -> Response:
    _, site, patient = dash.patient_access(request)
    qp = request.query_params
    device = qp.get("device", "")
    if device not in dash.devices_of(site, patient):
        raise HttpError(404, "no such device for this patient")
    kind = qp.get("kind", "envelope")
    if kind not in ("envelope", "acc"):
        raise HttpError(400, "kind must be envelope or acc")
    now = datetime.now(UTC)
    end = _parse_time(qp.get("end"), now)
    start = _parse_time(qp.get("start"), end - timedelta(minutes=5))
    max_points = max(10, min(5000, int(qp.get("max_points", "1500"))))
    return _json(await asyncio.to_thread(dash.data.series, device, kind, start, end, max_points))


async def api_activity(dash: Dashboard, request: Request) -> Response:
    """Activity spans of a device (the detector's context: rest, walking, ...) in the last minutes."""
    _, site, patient = dash.patient_access(request)
    device = request.query_params.get("device", "")
    if device not in dash.devices_of(site, patient):
        raise HttpError(404, "no such device for this patient")
    minutes = max(1.0, min(24 * 60.0, float(request.query_params.get("minutes", "30"))))
    end = _parse_time(request.query_params.get("end"), datetime.now(UTC))
    start = _parse_time(request.query_params.get("start"), end - timedelta(minutes=minutes))
    spans = await asyncio.to_thread(dash.data.activity, device, start, end)
    return _json({"device": device, "activity": spans})


# ---------------------------------------------------------------------------------------------- review


async def api_review(dash: Dashboard, request: Request) -> Response:
    user, site, patient = dash.patient_access(request)
    body = await _body(request)
    verdict = body.get("verdict")
    if verdict not in VERDICTS:
        raise HttpError(400, f"verdict must be one of {', '.join(VERDICTS)}")
    note = str(body.get("note") or "")[:2000]
    event_id = request.path_params["event_id"]
    ev = await _event_of(dash, site, patient, event_id)
    review = await asyncio.to_thread(
        dash.data.review, event_id, verdict, note, user.username, ev["device"], patient
    )
    return _json({"ok": True, "review": review})


async def api_audit(dash: Dashboard, request: Request) -> Response:
    _, site, patient = dash.patient_access(request)
    ev = await _event_of(dash, site, patient, request.path_params["event_id"])
    return _json({"audit": await asyncio.to_thread(dash.data.audit, ev["id"])})


async def api_labels(dash: Dashboard, request: Request) -> Response:
    _, _site, patient = dash.patient_access(request)
    fmt = request.path_params["fmt"]
    if fmt not in ("json", "csv"):
        raise HttpError(404, "labels come as .json or .csv")
    text = await asyncio.to_thread(dash.data.labels, patient, fmt)
    media = "application/json" if fmt == "json" else "text/csv"
    return PlainTextResponse(
        text,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="labels-{patient}.{fmt}"'},
    )


# ------------------------------------------------------------------------------------------ trends, report


async def api_trends(dash: Dashboard, request: Request) -> Response:
    _, site, patient = dash.patient_access(request)
    days = max(1, min(120, int(request.query_params.get("days", "14"))))
    now = datetime.now(UTC)
    end = _parse_time(request.query_params.get("end"), now)
    start = end - timedelta(days=days)
    devs = dash.devices_of(site, patient)
    tz = dash.cfg.timezone
    return _json(await asyncio.to_thread(dash.data.trends, patient, devs, start, end, tz))


async def api_interventions(dash: Dashboard, request: Request) -> Response:
    user, _site, patient = dash.patient_access(request)
    if request.method == "POST":
        body = await _body(request)
        kind = str(body.get("kind") or "").strip()
        if not kind:
            raise HttpError(400, "kind is required (e.g. dose change, physiotherapy course)")
        at = _parse_time(body.get("at"), datetime.now(UTC))
        end = _parse_time(body.get("end"), at) if body.get("end") else None
        row = await asyncio.to_thread(
            dash.data.add_intervention,
            patient,
            at,
            kind[:100],
            str(body.get("text") or "")[:2000],
            user.username,
            end,
        )
        return _json({"ok": True, "intervention": row})
    return _json({"interventions": await asyncio.to_thread(dash.data.interventions, patient)})


async def api_report(dash: Dashboard, request: Request) -> Response:
    _, site, patient = dash.patient_access(request)
    fmt = request.path_params["fmt"]
    if fmt not in ("html", "pdf"):
        raise HttpError(404, "reports come as .html or .pdf")
    now = datetime.now(UTC)
    end = _parse_time(request.query_params.get("end"), now)
    start = _parse_time(request.query_params.get("start"), end - timedelta(days=14))
    if end <= start:
        raise HttpError(400, "end must be after start")
    devs = dash.devices_of(site, patient)
    device = request.query_params.get("device") or (devs[0] if devs else "")
    if device not in devs:
        raise HttpError(404, "no such device for this patient")
    tz = dash.cfg.timezone
    body = await asyncio.to_thread(dash.data.report, site, patient, device, start, end, fmt, tz)
    name = f"report-{patient}-{device}-{start:%Y%m%d}-{end:%Y%m%d}.{fmt}"
    if fmt == "pdf":
        return Response(
            body,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return Response(body, media_type="text/html; charset=utf-8")


# ---------------------------------------------------------------------------------------------- notices


async def api_notices(dash: Dashboard, request: Request) -> Response:
    user = dash.user(request)
    rules = dash.notices.rules_json()
    return _json({"notices": dash.notices.visible(dash.visible_sites(user)), "rules": rules})


async def api_ack(dash: Dashboard, request: Request) -> Response:
    user = dash.user(request)
    notice = dash.notices.notices.get(request.path_params["notice_id"])
    if notice is None or not user.may_see(notice["site"]):
        raise HttpError(404, "no such notice")
    body = await _body(request)
    acked = dash.notices.acknowledge(notice["id"], user.username, str(body.get("note") or ""))
    return _json({"ok": True, "notice": acked})


# ---------------------------------------------------------------------------------------------- app


def create_app(cfg: DashboardConfig, dash: Dashboard | None = None) -> Starlette:
    dash = dash or Dashboard(cfg)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dash.start()
        try:
            yield
        finally:
            await dash.stop()

    def r(path: str, fn: Callable[[Dashboard, Request], Awaitable[Response]], methods: list[str]) -> Route:
        return Route(path, _route(dash, fn), methods=methods)

    p = "/api/p/{site}/{patient}"
    routes = [
        r("/", page, ["GET"]),
        r("/notices", page, ["GET"]),
        r("/p/{site}/{patient}/{view}", page, ["GET"]),
        r("/login", login_page, ["GET"]),
        r("/api/login", api_login, ["POST"]),
        r("/api/logout", api_logout, ["POST"]),
        r("/api/me", api_me, ["GET"]),
        r("/api/patients", api_patients, ["GET"]),
        r("/api/stream", api_stream, ["GET"]),
        r(f"{p}/live", api_live, ["GET"]),
        r(f"{p}/events", api_events, ["GET"]),
        r(f"{p}/series", api_series, ["GET"]),
        r(f"{p}/activity", api_activity, ["GET"]),
        r(p + "/event/{event_id}", api_event, ["GET"]),
        r(p + "/event/{event_id}/review", api_review, ["POST"]),
        r(p + "/event/{event_id}/audit", api_audit, ["GET"]),
        r(p + "/labels.{fmt}", api_labels, ["GET"]),
        r(f"{p}/trends", api_trends, ["GET"]),
        r(f"{p}/interventions", api_interventions, ["GET", "POST"]),
        r(p + "/report.{fmt}", api_report, ["GET"]),
        r("/api/notices", api_notices, ["GET"]),
        r("/api/notices/{notice_id}/ack", api_ack, ["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])
    app.state.dashboard = dash
    return app


class SecurityHeaders:
    """Headers for a clinical web app: nothing from other origins (the app needs none), no framing
    (clickjacking), no MIME sniffing, no referrer (URLs carry patient pseudonyms)."""

    HEADERS = (
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
