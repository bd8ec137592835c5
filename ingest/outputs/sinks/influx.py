"""InfluxDB sinks: the v2/v3 write API through influxdb-client, and the v1 ``/write`` API.

Records are line-protocol chunks (newline-terminated lines) built in bulk by
``ingest.outputs.lineproto``. A batch is several records joined into one request. The server's answer
decides what happens next:

- 2xx: delivered.
- 413 (too large): the batch is split in halves and each half sent, recursively.
- 400 (bad lines): the batch is bisected down to the records the server refuses, which are
  reported in ``SinkRejected.bad`` for quarantine; the good records in it are delivered. (Lines
  that arrive twice are harmless: a point with the same series and timestamp overwrites itself.)
- 429 / 5xx / connection errors: ``SinkUnavailable`` with the server's Retry-After, if any.
"""

from __future__ import annotations

import gzip
import ssl
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api import WritePrecision
from influxdb_client.rest import ApiException

from ingest.config import InfluxSection, read_secret
from ingest.outputs.sinks.base import SinkRejected, SinkUnavailable


class _HttpStatus(Exception):
    def __init__(self, status: int, text: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}: {text.strip()[:300]}")
        self.status = status
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from InfluxDB; fall back to our own backoff


@dataclass
class _InfluxBase:
    cfg: InfluxSection
    name: str = "influx"
    requests: int = field(default=0, init=False)
    last_rejection: str = field(default="", init=False)

    async def _post(self, body: bytes) -> None:
        raise NotImplementedError

    async def send(self, records: list[bytes]) -> None:
        bad: list[int] = []
        await self._send_range(records, 0, len(records), bad)
        if bad:
            raise SinkRejected(
                f"{self.name}: server refused {len(bad)} record(s): {self.last_rejection}", bad
            )

    async def _send_range(self, records: list[bytes], lo: int, hi: int, bad: list[int]) -> None:
        if lo >= hi:
            return
        try:
            self.requests += 1
            await self._post(b"".join(records[lo:hi]))
        except _HttpStatus as exc:
            if exc.status in (400, 413) and hi - lo > 1:
                mid = (lo + hi) // 2
                await self._send_range(records, lo, mid, bad)
                await self._send_range(records, mid, hi, bad)
                return
            if exc.status == 400 or (exc.status == 413 and hi - lo == 1):
                bad.append(lo)
                self.last_rejection = str(exc)
                return
            raise SinkUnavailable(f"{self.name}: {exc}", retry_after=exc.retry_after) from exc


@dataclass
class InfluxV2Sink(_InfluxBase):
    """InfluxDB 2.x / 3.x (and anything speaking ``/api/v2/write``) via influxdb-client."""

    def __post_init__(self) -> None:
        self._client: InfluxDBClientAsync | None = None

    async def __aenter__(self) -> Self:
        cfg = self.cfg
        kwargs: dict[str, object] = {"verify_ssl": cfg.verify_tls}
        if cfg.ca_file:
            kwargs["ssl_ca_cert"] = str(cfg.ca_file)
        self._client = InfluxDBClientAsync(
            url=cfg.url,
            token=read_secret(cfg.token, cfg.token_file, "influx.token_file") or "",
            org=cfg.org or "-",
            enable_gzip=cfg.gzip,
            timeout=int(cfg.timeout_s * 1000),
            **kwargs,
        )
        self._write = self._client.write_api()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _post(self, body: bytes) -> None:
        try:
            await self._write.write(
                bucket=self.cfg.bucket,
                org=self.cfg.org or "-",
                record=body,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]  # a str enum in the stubs
            )
        except ApiException as exc:
            headers: dict[str, str] = dict(exc.headers or {})
            text = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body)
            raise _HttpStatus(int(exc.status or 0), text, _retry_after(headers.get("Retry-After"))) from exc
        except (InfluxDBError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"{self.name}: {self.cfg.url}: {exc!r}") from exc


@dataclass
class InfluxV1Sink(_InfluxBase):
    """InfluxDB 1.x ``/write?db=&rp=&precision=ns`` with HTTP basic auth (never in the URL)."""

    def __post_init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        cfg = self.cfg
        auth = None
        if cfg.username:
            pw = read_secret(cfg.password, cfg.password_file, "influx.password_file") or ""
            auth = aiohttp.BasicAuth(cfg.username, pw)
        ssl_arg: ssl.SSLContext | bool = True
        if cfg.url.startswith("https"):
            ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            if not cfg.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ssl_arg = ctx
        self._ssl = ssl_arg
        self._session = aiohttp.ClientSession(auth=auth, timeout=aiohttp.ClientTimeout(total=cfg.timeout_s))
        params = {"db": cfg.database, "precision": "ns"}
        if cfg.retention_policy:
            params["rp"] = cfg.retention_policy
        self._params = params
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _post(self, body: bytes) -> None:
        if self._session is None:
            raise SinkUnavailable(f"{self.name}: not open")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.cfg.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(
                f"{self.cfg.url}/write", params=self._params, data=body, headers=headers, ssl=self._ssl
            ) as resp:
                if resp.status // 100 == 2:
                    return
                text = await resp.text()
                raise _HttpStatus(resp.status, text, _retry_after(resp.headers.get("Retry-After")))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkUnavailable(f"{self.name}: {self.cfg.url}: {exc!r}") from exc


def make_influx_sink(cfg: InfluxSection) -> InfluxV1Sink | InfluxV2Sink:
    return InfluxV1Sink(cfg) if cfg.api == "v1" else InfluxV2Sink(cfg)
