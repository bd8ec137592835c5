"""HistoryStore over InfluxDB with InfluxQL on ``/query``.

Why InfluxQL on ``/query``: one dialect that InfluxDB 1.x serves natively, 2.x through its
v1-compatible API (a database/retention-policy mapping onto the bucket) and 3.x as well, so a
clinic's server of any generation works without Flux or SQL variants.

Authentication: a token (``Authorization: Token ...``: 2.x and 3.x) or a user and password (HTTP
basic auth: 1.x with auth enabled, or 2.x's v1 users). Secrets never go into the URL, so they stay
out of proxy and server logs.

Responses are requested ``chunked`` (the server streams JSON objects of at most ``chunk_size``
rows), so a server's ``max-row-limit`` cannot silently truncate a month of events; times come as
integer nanoseconds (``epoch=ns``), floats as Go's shortest round-trip text, i.e. exactly what the
gateway wrote.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from dashboard.history.base import (
    GAP_LOOKBACK_S,
    STATUS_PERIOD_S,
    ActivityRow,
    CoverageRow,
    DeviceRow,
    EventColumns,
    EventRow,
    GapRow,
    HealthRow,
    HistoryError,
    HistoryStore,
    SeriesChannel,
    SeriesKind,
    SeriesRows,
    bucket_ms_for,
    coverage_from,
    event_columns_from,
    from_ns,
    to_ns,
)

__all__ = ["InfluxHistory", "quote_ident", "quote_string"]

_HEALTH_FLOATS = (
    "battery_pct",
    "battery_mv",
    "loss_pct",
    "timestamp_quality_ms",
    "clock_drift_ppm",
    "spool_bytes",
)


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


Rows = list[dict[str, Any]]


class InfluxHistory:
    """Read-only InfluxQL queries over the gateway's measurements (``docs/influx-schema.md``).

    Parameters:
        url: server base URL (``http://host:8086``).
        database: the 1.x database, or the 2.x/3.x database mapped to the bucket.
        retention_policy: optional (1.x / 2.x DBRP mapping).
        token / username+password: authentication, see the module docstring.
        ca_file, verify_tls: TLS trust; timeout_s: per request.
    """

    def __init__(
        self,
        url: str,
        database: str = "neurospasm",
        *,
        retention_policy: str = "",
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        verify_tls: bool = True,
        timeout_s: float = 30.0,
        chunk_size: int = 10_000,
        status_period_s: float = STATUS_PERIOD_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.name = f"influx:{self.url}/{database}"
        self.timeout_s = timeout_s
        self.chunk_size = chunk_size
        self.status_period_s = status_period_s
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif username:
            cred = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"
        self._ssl: ssl.SSLContext | None = None
        if self.url.startswith("https"):
            ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if not verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx

    @classmethod
    def from_section(cls, cfg: Any) -> InfluxHistory:
        """From the gateway's ``[influx]`` section (``ingest.config.InfluxSection``)."""
        from ingest.config import read_secret

        return cls(
            cfg.url,
            cfg.database if cfg.api == "v1" else cfg.bucket,
            retention_policy=cfg.retention_policy,
            token=read_secret(cfg.token, cfg.token_file, "influx.token_file"),
            username=cfg.username,
            password=read_secret(cfg.password, cfg.password_file, "influx.password_file"),
            ca_file=cfg.ca_file,
            verify_tls=cfg.verify_tls,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        return None  # one short-lived connection per request: nothing held open

    # -- transport -------------------------------------------------------------------------------
    def query(self, q: str) -> list[dict[str, Any]]:
        """Run InfluxQL; return its series (name, tags, columns, values), chunks merged.

        Raises HistoryError naming the server and the statement on any HTTP, network or query error.
        """
        params = {
            "db": self.database,
            "q": q,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(self.chunk_size),
        }
        if self.retention_policy:
            params["rp"] = self.retention_policy
        req = urllib.request.Request(
            f"{self.url}/query",
            data=urllib.parse.urlencode(params).encode(),
            headers={**self._headers, "Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self._ssl) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace").strip()[:300]
            raise HistoryError(f"{self.name}: HTTP {exc.code} for {q[:120]!r}: {text}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise HistoryError(f"{self.name}: {exc} (query {q[:120]!r})") from None
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        order: list[tuple[str, str]] = []
        for line in body.splitlines():
            if not line.strip():
                continue
            doc = json.loads(line)
            if "error" in doc:
                raise HistoryError(f"{self.name}: {doc['error']} (query {q[:120]!r})")
            for result in doc.get("results", []):
                if "error" in result:
                    raise HistoryError(f"{self.name}: {result['error']} (query {q[:120]!r})")
                for s in result.get("series", []):
                    key = (s.get("name", ""), json.dumps(s.get("tags") or {}, sort_keys=True))
                    if key in merged:
                        merged[key]["values"].extend(s.get("values", []))
                    else:
                        merged[key] = {**s, "values": list(s.get("values", []))}
                        order.append(key)
        return [merged[k] for k in order]

    def rows(self, q: str) -> Rows:
        """Rows of a query as dicts (columns plus the series' GROUP BY tags)."""
        out: Rows = []
        for s in self.query(q):
            tags = s.get("tags") or {}
            cols = s["columns"]
            for values in s["values"]:
                row = dict(zip(cols, values, strict=True))
                row.update(tags)
                out.append(row)
        return out

    @staticmethod
    def _where(device: str, start: datetime, end: datetime, extra: Iterable[str] = ()) -> str:
        parts = [f'"device" = {quote_string(device)}', f"time >= {to_ns(start)}", f"time < {to_ns(end)}"]
        parts.extend(extra)
        return " WHERE " + " AND ".join(parts)

    # -- queries ---------------------------------------------------------------------------------
    def devices(self) -> list[DeviceRow]:
        def spans(meas: str, field: str) -> dict[tuple[str, str], tuple[int, int]]:
            out: dict[tuple[str, str], tuple[int, int]] = {}
            for fn in ("first", "last"):
                for r in self.rows(f'SELECT {fn}("{field}") FROM "{meas}" GROUP BY "patient", "device"'):
                    key = (r.get("patient") or "", r["device"])
                    lo, hi = out.get(key, (int(r["time"]), int(r["time"])))
                    out[key] = (int(r["time"]), hi) if fn == "first" else (lo, int(r["time"]))
            return out

        # Health points, when there are any, say when the device was seen (as in the SQLite backend).
        merged = {**spans("spasm_event", "duration_s"), **spans("device_health", "monitoring")}
        return [DeviceRow(p, d, from_ns(lo), from_ns(hi)) for (p, d), (lo, hi) in sorted(merged.items())]

    @staticmethod
    def _event(r: dict[str, Any]) -> EventRow:
        onset = int(r["time"])
        dur = float(r["duration_s"])
        clipped = r.get("clipped")
        return EventRow(
            id=str(r["id"]), device=r["device"], patient=r.get("patient") or "", type=r["type"],
            channel=r["channel"], onset=from_ns(onset), end=from_ns(onset + round(dur * 1e9)),
            duration_s=dur, peak_uv=_opt(r.get("peak_uv")), mean_uv=_opt(r.get("mean_uv")),
            relative_amplitude=_opt(r.get("relative_amplitude")), frequency_hz=_opt(r.get("frequency_hz")),
            confidence=_opt(r.get("confidence")), context=r.get("context"),
            clipped=None if clipped is None else bool(clipped),
        )  # fmt: skip

    def events(
        self, device: str, start: datetime, end: datetime, *, types: set[str] | None = None
    ) -> list[EventRow]:
        extra = []
        if types is not None:
            if not types:
                return []
            extra.append("(" + " OR ".join(f'"type" = {quote_string(t)}' for t in sorted(types)) + ")")
        rows = self.rows('SELECT * FROM "spasm_event"' + self._where(device, start, end, extra))
        unique = {r["id"]: r for r in rows}
        return sorted((self._event(r) for r in unique.values()), key=lambda e: (e.onset, e.id))

    def event_columns(self, device: str, start: datetime, end: datetime) -> EventColumns:
        q = 'SELECT "id", "type", "duration_s", "relative_amplitude", "frequency_hz" FROM "spasm_event"'
        ids: list[str] = []
        types: list[str] = []
        onsets: list[int] = []
        dur: list[float] = []
        rel: list[float | None] = []
        freq: list[float | None] = []
        for s in self.query(q + self._where(device, start, end)):
            c = {name: i for i, name in enumerate(s["columns"])}
            it, ii, ity, idu, ir, ifr = (
                c["time"],
                c["id"],
                c["type"],
                c["duration_s"],
                c["relative_amplitude"],
                c["frequency_hz"],
            )
            for v in s["values"]:
                onsets.append(int(v[it]))
                ids.append(str(v[ii]))
                types.append(v[ity])
                dur.append(float(v[idu]))
                rel.append(v[ir])
                freq.append(v[ifr])
        return event_columns_from(ids, types, onsets, dur, rel, freq)

    def event(self, event_id: str) -> EventRow | None:
        rows = self.rows(f'SELECT * FROM "spasm_event" WHERE "id" = {quote_string(event_id)}')
        return self._event(rows[0]) if rows else None

    def gaps(self, device: str, start: datetime, end: datetime) -> list[GapRow]:
        s = to_ns(start)
        lookback = from_ns(s - int(GAP_LOOKBACK_S * 1e9))
        out = []
        for r in self.rows('SELECT * FROM "gap"' + self._where(device, lookback, end)):
            t0 = int(r["time"])
            dur = float(r["duration_s"])
            t1 = t0 + round(dur * 1e9)
            if t1 > s or t0 >= s:
                out.append(
                    GapRow(
                        str(r["id"]),
                        r["device"],
                        r.get("patient") or "",
                        r["cause"],
                        r["domain"],
                        from_ns(t0),
                        from_ns(t1),
                        dur,
                        int(r["samples_missing"]),
                    )
                )
        return sorted(out, key=lambda g: (g.start, g.id))

    def series(
        self, device: str, kind: SeriesKind, start: datetime, end: datetime, max_points: int = 2000
    ) -> SeriesRows:
        bucket_ms = bucket_ms_for(start, end, max_points)
        group = f" GROUP BY time({bucket_ms}ms)"
        channels: dict[str, SeriesChannel] = {}
        if kind == "envelope":
            q = 'SELECT min("uv"), max("uv"), mean("uv") FROM "emg_envelope"' + self._where(
                device, start, end
            )
            for s in self.query(q + group + ', "channel" fill(none)'):
                v = s["values"]
                channels[(s.get("tags") or {})["channel"]] = _channel(v, 1)
        elif kind == "acc":
            sel = ", ".join(f'min("{a}"), max("{a}"), mean("{a}")' for a in "xyz")
            q = f'SELECT {sel} FROM "acc"' + self._where(device, start, end)
            for s in self.query(q + group + " fill(none)"):
                for i, axis in enumerate("xyz"):
                    vals = [row for row in s["values"] if row[1 + 3 * i] is not None]
                    channels[axis] = _channel(vals, 1 + 3 * i)
        else:
            raise ValueError(f"series kind must be 'envelope' or 'acc', not {kind!r}")
        return SeriesRows(device, kind, start, end, bucket_ms, dict(sorted(channels.items())))

    def activity(self, device: str, start: datetime, end: datetime) -> list[ActivityRow]:
        out = []
        for r in self.rows('SELECT * FROM "activity"' + self._where(device, start, end)):
            t0 = int(r["time"])
            dur = float(r["duration_s"])
            out.append(
                ActivityRow(
                    r["device"],
                    r.get("patient") or "",
                    r["context"],
                    from_ns(t0),
                    from_ns(t0 + round(dur * 1e9)),
                    dur,
                    r.get("id"),
                )
            )
        return sorted(out, key=lambda a: (a.start, a.context))

    def health(self, device: str, start: datetime, end: datetime) -> list[HealthRow]:
        out = []
        for r in self.rows('SELECT * FROM "device_health"' + self._where(device, start, end)):
            contact = {
                k[len("contact_") :]: bool(v)
                for k, v in r.items()
                if k.startswith("contact_") and v is not None
            }
            out.append(
                HealthRow(
                    r["device"],
                    r.get("patient") or "",
                    from_ns(int(r["time"])),
                    bool(r.get("monitoring")),
                    contact=dict(sorted(contact.items())),
                    **{k: _opt(r.get(k)) for k in _HEALTH_FLOATS},
                )
            )
        return out

    def coverage(self, device: str, start: datetime, end: datetime, bucket_s: int) -> list[CoverageRow]:
        q = 'SELECT count("monitoring") FROM "device_health"' + self._where(
            device, start, end, ['"monitoring" = true']
        )
        counts = {
            int(r["time"]): int(r["count"])
            for r in self.rows(q + f" GROUP BY time({int(bucket_s)}s) fill(none)")
        }
        return coverage_from(
            start, end, bucket_s, counts, self.gaps(device, start, end), self.status_period_s
        )

    def event_counts(
        self, device: str, start: datetime, end: datetime, bucket_s: int
    ) -> dict[tuple[int, str], int]:
        q = 'SELECT count("duration_s") FROM "spasm_event"' + self._where(device, start, end)
        rows = self.rows(q + f' GROUP BY time({int(bucket_s)}s), "type" fill(none)')
        return {(int(r["time"]), str(r["type"])): int(r["count"]) for r in rows if r["count"]}


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def _channel(values: list[list[Any]], col: int) -> SeriesChannel:
    if not values:
        e = np.empty(0)
        return SeriesChannel(np.empty(0, dtype=np.int64), e, e.copy(), e.copy())
    a = np.array([[row[0], row[col], row[col + 1], row[col + 2]] for row in values], dtype=object)
    return SeriesChannel(
        a[:, 0].astype(np.int64),
        a[:, 1].astype(np.float64),
        a[:, 2].astype(np.float64),
        a[:, 3].astype(np.float64),
    )


def _conforms(store: InfluxHistory) -> HistoryStore:
    return store  # mypy checks that InfluxHistory implements the whole HistoryStore protocol
