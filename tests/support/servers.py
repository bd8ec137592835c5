"""Real servers for the tests: Mosquitto, InfluxDB 1.x and VictoriaMetrics, each on free loopback ports.

Why real servers and not mocks: the delivery guarantees we promise (QoS 1 redelivery, persistent sessions,
line-protocol acceptance, a broker killed with SIGKILL and restarted) are properties of the servers' actual
behaviour, which a mock would only restate. Every class here:

* runs its server from the Debian package's binary in its own temporary directory, on ports chosen by
  :func:`free_port` (outside the kernel's ephemeral range, so a client reconnecting during an outage can
  never be handed the server's port as its own source port);
* waits until the server answers (TCP accept or HTTP health) and, if it does not within the timeout or it
  exits early, raises :class:`ServerError` with the tail of the server's log;
* stops with SIGTERM then SIGKILL, and offers :meth:`Server.kill` (SIGKILL, like a crash) and
  :meth:`Server.start` / :meth:`Server.restart` on the SAME ports with the data directory intact, which the
  outage tests need; async tests use :meth:`Server.astart` / :meth:`Server.astop` /
  :meth:`Server.arestart`, which keep the event loop running during a 20 s outage;
* is a context manager, and is also killed if the test process dies (PR_SET_PDEATHSIG), so no test run
  leaves a server behind.

A missing binary raises :class:`ServerBinaryMissing`, whose message says to run ``scripts/test`` (which
installs the Debian packages): the server tests must fail loudly, never skip, on a machine without them.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"

# Where Debian puts the daemons; /usr/sbin is not on a normal user's PATH.
_EXTRA_BIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")

_handed_out_ports: set[int] = set()


class ServerError(RuntimeError):
    """A test server could not be started, did not become ready, or refused a helper request."""


class ServerBinaryMissing(ServerError):
    """The server's executable is not installed: the message names the Debian package and scripts/test."""


def find_binary(name: str, package: str) -> str:
    """Return the absolute path of ``name``, searching PATH and the sbin directories Debian uses.

    Raises :class:`ServerBinaryMissing` naming the Debian package, so the failure tells the reader exactly
    what to do instead of a bare ``FileNotFoundError`` from subprocess.
    """
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_EXTRA_BIN_DIRS)
    found = shutil.which(name, path=path)
    if found is None:
        raise ServerBinaryMissing(
            f"'{name}' not found (Debian package '{package}'). Run scripts/test, which installs the test "
            f"servers with apt-get, or: apt-get install -y --no-install-recommends {package}"
        )
    return found


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _xdist_worker() -> tuple[int, int]:
    """(index, count) of this pytest-xdist worker ("gw3" -> 3), or (0, 1) without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    try:
        count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
        index = int(name[2:]) if name.startswith("gw") else 0
    except ValueError:
        return 0, 1
    return index % count, count


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing listens on and that this process has not handed out.

    The port is taken from 20000-32767 (outside Linux's default ephemeral range 32768-60999) so that
    outgoing connections, e.g. a gateway reconnecting while the broker is down, never get it as their
    source port and block the server's restart on the same port. The bind probe is done without
    SO_REUSEADDR so that ports with connections lingering in TIME_WAIT are avoided too.
    """
    low, high = _ephemeral_range()
    candidates = [p for p in range(20000, 32768) if not low <= p <= high]
    # Under pytest-xdist each worker process draws from its own residue class of ports, so two
    # workers can never both probe a port free and then race to bind it.
    worker, workers = _xdist_worker()
    candidates = [p for p in candidates if p % workers == worker]
    if not candidates:  # an unusual ip_local_port_range: fall back to the kernel's choice
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
            _handed_out_ports.add(port)
            return port
    rng = random.Random()
    for _ in range(200):
        port = rng.choice(candidates)
        if port in _handed_out_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out_ports.add(port)
        return port
    raise ServerError(f"no free TCP port found on {host} in 200 tries")


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when a TCP connection to host:port is accepted right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded once here, not in the child: between fork and exec only async-signal-safe work is wise.
_LIBC = _load_libc()
_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:
    """In the child: ask the kernel to SIGKILL us when the test process dies, so no server outlives it.

    It fires when the *thread* that started the server exits; the fixtures start servers from pytest's
    main thread, which lives as long as the run.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def http_request(
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """Do one HTTP request with the standard library; return (status, body) for any status code.

    Only connection-level failures raise (as :class:`ServerError` naming the URL): the callers decide what
    a 4xx/5xx means, since several tests exist precisely to provoke them.
    """
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        raise ServerError(f"{method} {url}: {exc}") from exc


class Server:
    """One server process: start, wait until ready, stop/kill/restart on the same ports, log tail.

    Subclasses set ``name``, write their config in :meth:`prepare` (called once, before the first start)
    and implement :meth:`argv` and :meth:`is_ready`; :meth:`after_start` runs after every start.
    """

    name = "server"
    start_timeout = 30.0
    stop_timeout = 15.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._prepared = False
        self._start_timeout = self.start_timeout
        self.starts = 0

    # -- to override -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Write config files, create users, certificates...: once, before the first start."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def after_start(self) -> None:
        """Runs after each successful start (e.g. create the test database on first start)."""

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float | None = None) -> Self:
        """Start the server (again, on the same ports and data directory) and wait until it is ready."""
        deadline = self._spawn(timeout)
        delay = 0.02
        while not self._ready_or_raise(deadline):
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        self.after_start()
        return self

    async def astart(self, ready_within: float | None = None) -> Self:
        """:meth:`start` for async tests: the event loop keeps running (clients, gateways) meanwhile.

        The process is spawned from the calling (event-loop) thread, never from a worker thread, so
        PR_SET_PDEATHSIG does not kill the server when an executor thread exits.
        """
        deadline = self._spawn(ready_within)
        delay = 0.02
        while not await asyncio.to_thread(self._ready_or_raise, deadline):
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        await asyncio.to_thread(self.after_start)
        return self

    def _spawn(self, timeout: float | None) -> float:
        if self.running:
            raise ServerError(f"{self.name} is already running (pid {self.pid})")
        if not self._prepared:
            self.prepare()
            self._prepared = True
        argv = self.argv()
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n==== test harness: start #{self.starts}: {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_set_pdeathsig,
            )
        self._start_timeout = self.start_timeout if timeout is None else timeout
        return time.monotonic() + self._start_timeout

    def _ready_or_raise(self, deadline: float) -> bool:
        """One readiness probe; raises with the log tail if the server died or the deadline passed."""
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            self._proc = None
            raise ServerError(
                f"{self.name} exited with code {code} during start-up; log {self.log_path}:\n"
                f"{self.log_tail()}"
            )
        if self.is_ready():
            return True
        if time.monotonic() > deadline:
            self.kill()
            raise ServerError(
                f"{self.name} not ready after {self._start_timeout:.0f} s; log {self.log_path}:\n"
                f"{self.log_tail()}"
            )
        return False

    def stop(self, timeout: float | None = None) -> int | None:
        """Graceful stop: SIGTERM, then SIGKILL if it has not exited within ``timeout``. Returns exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        return proc.returncode

    async def astop(self, grace: float | None = None) -> int | None:
        """:meth:`stop` for async tests: waits for the exit without blocking the event loop."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, self.stop_timeout if grace is None else grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL, as in a crash or ``kill -9``: no shutdown handler runs. Waits until it is gone.

        Returns at once in practice (the kernel reaps a SIGKILLed process immediately), so it is also
        fine to call from async tests.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None

    def restart(self, downtime: float = 0.0, *, hard: bool = False) -> Self:
        """Stop (SIGKILL when ``hard``), stay down ``downtime`` seconds, start on the same ports."""
        if hard:
            self.kill()
        else:
            self.stop()
        if downtime > 0:
            time.sleep(downtime)
        return self.start()

    async def arestart(self, downtime: float = 0.0, *, hard: bool = False) -> Self:
        """:meth:`restart` for async tests, e.g. ``await mosquitto.arestart(20, hard=True)``."""
        if hard:
            self.kill()
        else:
            await self.astop()
        if downtime > 0:
            await asyncio.sleep(downtime)
        return await self.astart()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} workdir={self.workdir}>"


# ----------------------------------------------------------------------------------------------------------
# TLS material
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throw-away CA, a server certificate for localhost/127.0.0.1 and a client certificate."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path, *, days: int = 2) -> TlsFiles:
    """Create a CA and CA-signed server and client certificates with the openssl CLI (EC P-256, fast).

    The server certificate carries subjectAltName DNS:localhost and IP:127.0.0.1 so that clients verify
    the hostname as in production, rather than turning verification off in the tests.
    """
    openssl = find_binary("openssl", "openssl")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        res = subprocess.run([openssl, *args], cwd=d, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise ServerError(f"openssl {' '.join(args)} failed in {d}:\n{res.stderr.strip()}")

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days),
        "-subj", "/CN=neurospasm test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for who, ext in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{who}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "authorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n" + ext
        )
        run("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN=neurospasm-{who}")
        run(
            "x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{who}.crt", "-days", str(days), "-extfile", f"{who}.ext",
        )  # fmt: skip
    for key in ("ca.key", "server.key", "client.key"):
        (d / key).chmod(0o600)
    return TlsFiles(
        ca_cert=d / "ca.crt",
        ca_key=d / "ca.key",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
    )


# ----------------------------------------------------------------------------------------------------------
# Mosquitto
# ----------------------------------------------------------------------------------------------------------


class Mosquitto(Server):
    """Mosquitto 2.0 (MQTT 3.1.1 and 5, shared subscriptions) on free loopback ports.

    Listeners: ``port`` (anonymous, always); ``auth_port`` when ``auth`` (username/password only);
    ``tls_port`` when ``tls`` (server certificate from :func:`make_tls_files`, files in ``tls_files``;
    a client certificate is required when ``require_client_cert``; a password too when ``auth``).

    Persistence is on in the work directory and saved every ``autosave_interval`` seconds (the Debian
    default is 30 min), so a persistent session and its queued QoS 1 messages survive a SIGKILL that
    comes more than that long after they were made; a SIGTERM stop always saves.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        auth: bool = False,
        tls: bool = False,
        require_client_cert: bool = False,
        username: str = "neurospasm",
        password: str = "test-password",
        autosave_interval: int = 1,
        extra_config: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir)
        self.binary = find_binary("mosquitto", "mosquitto")
        self.host = LOOPBACK
        self.port = free_port()
        self.auth_port: int | None = free_port() if auth else None
        self.tls_port: int | None = free_port() if tls else None
        self.require_client_cert = require_client_cert
        self.username = username
        self.password = password
        self.autosave_interval = autosave_interval
        self.extra_config = list(extra_config)
        self.tls_files: TlsFiles | None = None
        self.config_path = self.workdir / "mosquitto.conf"

    def prepare(self) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            "# written by tests/support/servers.py",
            "per_listener_settings true",
            f"persistence true\npersistence_location {data}/",
            f"autosave_interval {self.autosave_interval}",
            "log_dest stderr",  # unbuffered: the log tail must be complete after a SIGKILL
            "log_type error\nlog_type warning\nlog_type notice",  # "information" logs every autosave
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to user 'mosquitto', who cannot write tmp dirs
        lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        password_file = self.workdir / "passwords"
        if self.auth_port is not None or self.tls_port is not None:
            passwd = find_binary("mosquitto_passwd", "mosquitto")
            res = subprocess.run(
                [passwd, "-b", "-c", str(password_file), self.username, self.password],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode != 0:
                raise ServerError(f"mosquitto_passwd failed for {password_file}: {res.stderr.strip()}")
        if self.auth_port is not None:
            lines += [
                f"listener {self.auth_port} {self.host}",
                "allow_anonymous false",
                f"password_file {password_file}",
            ]
        if self.tls_port is not None:
            self.tls_files = tls = make_tls_files(self.workdir / "tls")
            lines += [
                f"listener {self.tls_port} {self.host}",
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                f"require_certificate {'true' if self.require_client_cert else 'false'}",
            ]
            if self.auth_port is not None:
                lines += ["allow_anonymous false", f"password_file {password_file}"]
            else:
                lines.append("allow_anonymous true")
        lines += self.extra_config
        self.config_path.write_text("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        ports = [p for p in (self.port, self.auth_port, self.tls_port) if p is not None]
        return all(port_accepts(p, self.host) for p in ports)


# ----------------------------------------------------------------------------------------------------------
# InfluxDB 1.x
# ----------------------------------------------------------------------------------------------------------


class InfluxDB1(Server):
    """InfluxDB 1.x (Debian's 1.6) with the v1 HTTP API (``/write``, ``/query``) at ``url``.

    Every port it opens (RPC bind-address and HTTP) is a free loopback port; UDP, Graphite, collectd,
    OpenTSDB, the unix socket, self-monitoring and usage reporting are off. Meta, data and WAL live in
    the work directory and survive :meth:`stop`/:meth:`kill` and :meth:`start`. The WAL is fsynced on
    every write, so a point acknowledged with 204 survives a SIGKILL.

    ``database`` is created at first start. With ``auth``, authentication is enabled and an admin user
    (``admin_user``/``admin_password``) is created; the helpers then authenticate as that user.
    """

    name = "influxd"

    def __init__(
        self,
        workdir: Path,
        *,
        database: str = "neurospasm",
        auth: bool = False,
        admin_user: str = "admin",
        admin_password: str = "admin-password",
        max_body_size: int = 0,
    ) -> None:
        super().__init__(workdir)
        self.binary = find_binary("influxd", "influxdb")
        self.max_body_size = max_body_size  # bytes; 0 = unlimited (a limit makes the server answer 413)
        self.host = LOOPBACK
        self.port = free_port()
        self.rpc_port = free_port()
        self.url = f"http://{self.host}:{self.port}"
        self.database = database
        self.auth = auth
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.config_path = self.workdir / "influxdb.conf"

    def prepare(self) -> None:
        w = self.workdir
        config = f"""\
# written by tests/support/servers.py
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{w / "meta"}"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{w / "data"}"
  wal-dir = "{w / "wal"}"
  wal-fsync-delay = "0s"
  index-version = "inmem"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = true
  suppress-write-log = true
  pprof-enabled = false
  https-enabled = false
  unix-socket-enabled = false
  bind-socket = "{w / "influxdb.sock"}"
  max-body-size = {self.max_body_size}

[logging]
  level = "info"
  suppress-logo = true

[ifql]
  enabled = false

[continuous_queries]
  enabled = false

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"""
        self.config_path.write_text(config)

    def argv(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def is_ready(self) -> bool:
        try:
            status, _ = http_request("GET", f"{self.url}/ping", timeout=1.0)
        except ServerError:
            return False
        return status == 204

    def after_start(self) -> None:
        if self.starts > 1:
            return
        if self.auth:
            # Allowed without credentials only while no user exists yet.
            self._query_raw(
                f"CREATE USER \"{self.admin_user}\" WITH PASSWORD '{self.admin_password}' "
                "WITH ALL PRIVILEGES",
                None,
                post=True,
                with_auth=False,
            )
        # The meta store may still be opening right after /ping answers: retry briefly.
        deadline = time.monotonic() + 10
        while True:
            try:
                self._query_raw(f'CREATE DATABASE "{self.database}"', None, post=True)
                return
            except ServerError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- helpers ---------------------------------------------------------------------------------------
    def _auth_params(self) -> dict[str, str]:
        return {"u": self.admin_user, "p": self.admin_password} if self.auth else {}

    def _query_raw(
        self, q: str, db: str | None, *, post: bool = False, with_auth: bool = True, epoch: str = "ns"
    ) -> list[dict[str, Any]]:
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        if with_auth:
            params.update(self._auth_params())
        status, body = http_request("POST" if post else "GET", f"{self.url}/query", params=params)
        if status != 200:
            raise ServerError(f"InfluxDB {self.url}/query {q!r}: HTTP {status}: {body[:500]!r}")
        results: list[dict[str, Any]] = json.loads(body).get("results", [])
        for r in results:
            if "error" in r:
                raise ServerError(f"InfluxDB {self.url}/query {q!r}: {r['error']}")
        return results

    def query(self, q: str, db: str | None = None, *, epoch: str = "ns") -> list[dict[str, Any]]:
        """Run an InfluxQL statement; return its rows as dicts (columns, plus the series' tags if grouped).

        ``db`` defaults to the fixture's database; times are integers in ``epoch`` units (ns by default).
        Raises :class:`ServerError` with the server's message on any error.
        """
        post = not q.lstrip().upper().startswith(("SELECT", "SHOW"))
        results = self._query_raw(q, db or self.database, post=post, epoch=epoch)
        rows: list[dict[str, Any]] = []
        for result in results:
            for series in result.get("series", []):
                tags = series.get("tags") or {}
                for values in series.get("values", []):
                    row = dict(zip(series["columns"], values, strict=True))
                    row.update(tags)
                    rows.append(row)
        return rows

    def count(self, measurement: str, field: str, db: str | None = None, where: str = "") -> int:
        """Number of points of ``measurement`` that have ``field`` (0 when the measurement does not exist)."""
        clause = f" WHERE {where}" if where else ""
        rows = self.query(f'SELECT COUNT("{field}") FROM "{measurement}"{clause}', db)
        return int(rows[0]["count"]) if rows else 0

    def write(self, lines: str | bytes, db: str | None = None, *, precision: str = "ns") -> None:
        """Write line protocol through ``/write`` (the path the v1 sink uses); raise unless HTTP 204."""
        body = lines.encode() if isinstance(lines, str) else lines
        params = {"db": db or self.database, "precision": precision, **self._auth_params()}
        status, resp = http_request("POST", f"{self.url}/write", params=params, body=body)
        if status != 204:
            raise ServerError(f"InfluxDB {self.url}/write: HTTP {status}: {resp[:500]!r}")


# ----------------------------------------------------------------------------------------------------------
# VictoriaMetrics
# ----------------------------------------------------------------------------------------------------------


class VictoriaMetrics(Server):
    """VictoriaMetrics single-node: accepts InfluxDB line protocol on ``/api/v2/write`` and ``/write``.

    It stands in for InfluxDB 2.x/3.x in the tests of the v2 write path: influxdb-client's WriteApi
    talks to ``url`` with any token/org/bucket (they are ignored). Things to know when asserting:

    * series are named ``{measurement}_{field}``, tags become labels; ``/write?db=x`` adds label db="x";
    * rows older than the retention period are dropped *silently* (still HTTP 204): we start it with
      ``-retentionPeriod=100y`` so fixed historical timestamps in tests are kept;
    * ingested rows are buffered for about a second before they are searchable, and a new series with a
      recent timestamp stays invisible for about a second even after ``/internal/force_flush``: the
      helpers flush and poll until the samples they are told to expect are there
      (``-search.latencyOffset=0s`` and ``-search.disableCache`` stop queries from hiding the most recent
      points or serving stale cached results);
    * values are float64 and timestamps are kept in milliseconds;
    * :meth:`kill` (SIGKILL) loses the rows of the last second or so that were acknowledged but still in
      memory, unlike InfluxDB's fsynced WAL: outage tests should use :meth:`stop` / :meth:`start`.
    """

    name = "victoria-metrics"

    def __init__(self, workdir: Path, *, extra_args: Sequence[str] = ()) -> None:
        super().__init__(workdir)
        self.binary = find_binary("victoria-metrics", "victoria-metrics")
        self.host = LOOPBACK
        self.port = free_port()
        self.url = f"http://{self.host}:{self.port}"
        self.extra_args = list(extra_args)

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=INFO",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        try:
            status, _ = http_request("GET", f"{self.url}/health", timeout=1.0)
        except ServerError:
            return False
        return status == 200

    def flush(self) -> None:
        """Make everything acknowledged so far searchable."""
        status, body = http_request("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            raise ServerError(f"VictoriaMetrics {self.url}/internal/force_flush: HTTP {status}: {body!r}")

    def export(
        self, match: str = '{__name__=~".+"}', *, wait_for: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Raw samples of the series matching the selector: one dict per series, in VM's order.

        Each dict is ``{"metric": {"__name__": ..., label: value}, "values": [...], "timestamps": [ms]}``.
        Polls (with a flush each time) until at least ``wait_for`` samples in all are visible or
        ``timeout`` passes, then returns what is there: VictoriaMetrics 1.79 makes a *new* series with a
        recent timestamp searchable only about a second after it was acknowledged, even after
        ``/internal/force_flush``. Pass ``wait_for=0`` to assert that nothing is there.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            status, body = http_request(
                "POST",
                f"{self.url}/api/v1/export",
                body=urllib.parse.urlencode({"match[]": match, "start": "0"}).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            if status != 200:
                raise ServerError(
                    f"VictoriaMetrics {self.url}/api/v1/export {match!r}: HTTP {status}: {body!r}"
                )
            series = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            if sum(len(s["values"]) for s in series) >= wait_for or time.monotonic() > deadline:
                return series
            time.sleep(0.1)

    def samples(
        self, metric: str, *, wait_for: int = 1, timeout: float = 10.0, **labels: str
    ) -> list[tuple[int, float]]:
        """Sorted (timestamp_ms, value) pairs of ``metric`` (e.g. ``"emg_env"``) with the given labels.

        Waits as :meth:`export` does until ``wait_for`` samples are visible (at most ``timeout`` s).
        """
        selector = ",".join([f'__name__="{metric}"', *(f'{k}="{v}"' for k, v in labels.items())])
        out: list[tuple[int, float]] = []
        for series in self.export("{" + selector + "}", wait_for=wait_for, timeout=timeout):
            out.extend(zip(series["timestamps"], series["values"], strict=True))
        return sorted(out)

    def query(self, promql: str, *, wait_for: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Instant query (``/api/v1/query``, at "now", 5 min look-back); returns ``data.result``.

        Polls like :meth:`export` until ``wait_for`` result series are there or ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            status, body = http_request("GET", f"{self.url}/api/v1/query", params={"query": promql})
            if status != 200:
                raise ServerError(
                    f"VictoriaMetrics {self.url}/api/v1/query {promql!r}: HTTP {status}: {body!r}"
                )
            result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
            if len(result) >= wait_for or time.monotonic() > deadline:
                return result
            time.sleep(0.1)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until true; raise AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
