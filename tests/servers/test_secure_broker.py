"""The clinic broker as deployed: a real Mosquitto started from deploy/mosquitto/mosquitto.conf.

The configuration file is used as shipped; only its container paths (``/mosquitto/config``,
``/mosquitto/data``) and its three port numbers are rewritten into a temporary directory, and the test
fails if any of those lines is missing, so the file under test cannot drift from the file deployed.
Passwords, certificates and the ACL are made by the deploy scripts (deploy/scripts/add-site ->
mqtt-acl, mqtt-user, mqtt-certs), exactly as an operator makes them.

How refusals show: Mosquitto refuses a CONNECT without (valid) credentials with a CONNACK error. For
an ACL-denied PUBLISH it acknowledges (MQTT 3.1.1 has no way to say no) and drops the message; for a
SUBSCRIBE to topics the client may not read, Mosquitto 2.0's acl_file grants the subscription and then
checks every message (and retained message) against the ACL before delivering it. So the tests
prove that nothing arrives: a privileged auditor (an account added to the test's copy of the ACL
only, reading everything) or the denied reader itself sees a *sentinel* published afterwards by an
allowed client, and nothing before it. Mosquitto routes each PUBLISH when it receives it, before
acknowledging it, and a subscriber's queue is FIFO: once the sentinel has arrived, anything that
was going to be delivered before it has been.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import aiomqtt
import pytest
from support.harness import Proc, start_sim
from support.servers import (
    LOOPBACK,
    Server,
    ServerBinaryMissing,
    find_binary,
    free_port,
    make_tls_files,
    port_accepts,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy" / "scripts"
CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
PREFIX = "neurospasm/v1"
SITES = ("home-a", "home-b")
ROLES = "gw,dash,det,ops"

pytestmark = pytest.mark.servers


def console_script() -> str:
    """The installed ``neurospasm`` command, as a service runs it (not a module path that may move)."""
    exe = shutil.which("neurospasm", path=str(Path(sys.executable).parent))
    assert exe, f"no neurospasm console script beside {sys.executable}: pip install -e ."
    return exe


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def render_config(text: str, config_dir: Path, data_dir: Path, ports: dict[int, int]) -> str:
    """The deployed mosquitto.conf with its paths and ports moved into the test's directories."""
    replacements = {
        "/mosquitto/config/": f"{config_dir}/",
        "/mosquitto/data/": f"{data_dir}/",
        "listener 1883 127.0.0.1\n": f"listener {ports[1883]} {LOOPBACK}\n",
        "listener 8883\n": f"listener {ports[8883]} {LOOPBACK}\n",
        "listener 8884\n": f"listener {ports[8884]} {LOOPBACK}\n",
        "log_dest stdout\n": "log_dest stderr\n",
    }
    for old, new in replacements.items():
        assert old in text, f"{CONF}: expected {old.strip()!r}; update this test with the config"
        text = text.replace(old, new)
    if os.geteuid() == 0:
        text += "user root\n"  # else it drops to user mosquitto, who cannot read the tmp dir
    return text


class DeployedMosquitto(Server):
    """Mosquitto from the deployed config, with the scripts' accounts, ACL and certificates."""

    name = "mosquitto-deployed"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = find_binary("mosquitto", "mosquitto")
        find_binary("mosquitto_passwd", "mosquitto")
        find_binary("openssl", "openssl")
        self.conf_dir = self.workdir / "config"
        self.ports = {1883: free_port(), 8883: free_port(), 8884: free_port()}
        self.loopback_port, self.tls_port, self.ws_port = self.ports[1883], self.ports[8883], self.ports[8884]
        self.config_path = self.workdir / "mosquitto.conf"
        self.audit_password = "audit-" + uuid.uuid4().hex

    def prepare(self) -> None:
        self.conf_dir.mkdir(parents=True)
        (self.workdir / "data").mkdir()
        for args in (
            ("mqtt-certs", str(self.conf_dir / "certs"), "--server", "localhost,127.0.0.1", "--days", "2"),
            ("add-site", "--config-dir", str(self.conf_dir), "--roles", ROLES, *SITES),
        ):
            res = run_script(*args)
            assert res.returncode == 0, f"{args}: {res.stderr}"
        # The auditor exists only in the test's copy: it reads every topic, to see what got through.
        with (self.conf_dir / "acl").open("a") as fh:
            fh.write("\n# test only\nuser audit\ntopic read #\n")
        res = subprocess.run(
            ["mosquitto_passwd", str(self.conf_dir / "passwd"), "audit"],
            input=f"{self.audit_password}\n{self.audit_password}\n",
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        self.config_path.write_text(
            render_config(CONF.read_text(), self.conf_dir, self.workdir / "data", self.ports)
        )

    def argv(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def is_ready(self) -> bool:
        return all(port_accepts(p) for p in self.ports.values())

    # -- clients -------------------------------------------------------------------------------
    def password(self, account: str) -> str:
        if account == "audit":
            return self.audit_password
        return (self.conf_dir / "secrets" / account).read_text()

    def tls(self, cert: str | None) -> ssl.SSLContext:
        """A client TLS context that verifies the broker against the scripts' CA, as a gateway does."""
        ctx = ssl.create_default_context(cafile=str(self.conf_dir / "certs" / "ca.crt"))
        if cert is not None:
            base = self.conf_dir / "certs" / "clients" / cert
            ctx.load_cert_chain(str(base) + ".crt", str(base) + ".key")
        return ctx

    def client(
        self,
        account: str | None,
        *,
        listener: str = "tls",
        cert: str | None = "",
        password: str | None = None,
        v5: bool = False,
        **kw: Any,
    ) -> aiomqtt.Client:
        """An aiomqtt client as ``account``; over TLS with the account's own certificate by default."""
        port = {"tls": self.tls_port, "ws": self.ws_port, "loopback": self.loopback_port}[listener]
        if cert == "":
            cert = account if listener == "tls" and account != "audit" else None
        if listener == "tls" and account == "audit":
            cert = "gw-home-a"  # any certificate of ours: the password decides who it is
        return aiomqtt.Client(
            "localhost" if listener != "loopback" else LOOPBACK,
            port,
            username=account,
            password=(password if password is not None else self.password(account)) if account else None,
            tls_context=self.tls(cert) if listener != "loopback" else None,
            transport="websockets" if listener == "ws" else "tcp",
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            identifier=f"t-{account}-{uuid.uuid4().hex[:8]}",
            **{"timeout": 10, **kw},
        )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployedMosquitto]:
    try:
        server = DeployedMosquitto(tmp_path_factory.mktemp("clinic-broker"))
    except ServerBinaryMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def topic(site: str, kind: str, device: str = "dev-1", patient: str = "p-0001") -> str:
    return f"{PREFIX}/{site}/{patient}/{device}/{kind}"


@dataclass
class Reader:
    """A subscriber that records every message it receives."""

    client: aiomqtt.Client
    seen: list[tuple[str, bytes, bool]]
    arrived: asyncio.Event

    def add(self, item: tuple[str, bytes, bool]) -> None:
        self.seen.append(item)
        self.arrived.set()

    async def wait_for(self, predicate: Callable[[str, bytes], bool], within_s: float = 10.0) -> None:
        """Until a message for which ``predicate(topic, payload)`` holds has arrived."""
        async with asyncio.timeout(within_s):
            while not any(predicate(t, p) for t, p, _ in self.seen):
                self.arrived.clear()
                await self.arrived.wait()

    async def until_sentinel(self, sentinel: bytes) -> list[tuple[str, bytes]]:
        """Messages received before ``sentinel``; fails if the sentinel does not come."""
        await self.wait_for(lambda _t, p: p == sentinel)
        idx = next(i for i, (_, p, _) in enumerate(self.seen) if p == sentinel)
        before = [(t, p) for t, p, _ in self.seen[:idx]]
        del self.seen[: idx + 1]
        return before


@asynccontextmanager
async def reader(client: aiomqtt.Client, *filters: str) -> AsyncIterator[Reader]:
    async with client:
        r = Reader(client, [], asyncio.Event())
        for f in filters:
            await client.subscribe(f, qos=1)

        async def pump() -> None:
            async for msg in client.messages:
                r.add((str(msg.topic), bytes(msg.payload), bool(msg.retain)))  # type: ignore[arg-type]

        task = asyncio.create_task(pump())
        try:
            yield r
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


async def sentinel_from(broker: DeployedMosquitto, site: str = "home-a") -> bytes:
    """Publish a unique message as that site's gateway on its own events topic (allowed)."""
    payload = b"sentinel-" + uuid.uuid4().hex.encode()
    async with broker.client(f"gw-{site}") as gw:
        await gw.publish(topic(site, "events"), payload, qos=1)
    return payload


async def publish_as(broker: DeployedMosquitto, account: str | None, items: list[str], **kw: Any) -> bytes:
    """Publish a unique payload to each topic as ``account`` (QoS 1: acknowledged, maybe dropped)."""
    payload = f"probe-{uuid.uuid4().hex}".encode()
    async with broker.client(account, **kw) as c:
        for t in items:
            await c.publish(t, payload, qos=1)
    return payload


# --------------------------------------------------------------------------------------- connecting


async def _refused(client: aiomqtt.Client) -> str:
    with pytest.raises(aiomqtt.MqttError) as info:
        async with client:
            pass
    return str(info.value)


async def test_anonymous_and_bad_credentials_are_refused_on_the_network_listeners(
    broker: DeployedMosquitto,
) -> None:
    # No username (with a valid client certificate), on the TLS and the websockets listener.
    assert "authoriz" in (await _refused(broker.client(None, cert="gw-home-a"))).lower()
    assert "authoriz" in (await _refused(broker.client(None, listener="ws"))).lower()
    # A known account with a wrong password; an account that does not exist.
    await _refused(broker.client("gw-home-a", password="not-the-password-at-all"))
    await _refused(broker.client("dash-home-a", listener="ws", password="not-the-password-at-all"))
    await _refused(broker.client("gw-nowhere", cert="gw-home-a", password="whatever-it-is-12"))


async def test_tls_needs_a_client_certificate_from_our_ca(broker: DeployedMosquitto, tmp_path: Path) -> None:
    # The right password but no client certificate: the broker aborts the TLS session on 8883. (With
    # TLS 1.3 the client may notice only while it waits for the CONNACK: a short timeout keeps it quick.)
    await _refused(broker.client("gw-home-a", cert=None, timeout=2))
    # A certificate from another CA is refused too.
    other = make_tls_files(tmp_path / "other-ca")
    ctx = ssl.create_default_context(cafile=str(broker.conf_dir / "certs" / "ca.crt"))
    ctx.load_cert_chain(str(other.client_cert), str(other.client_key))
    foreign = aiomqtt.Client(
        "localhost", broker.tls_port, username="gw-home-a", password=broker.password("gw-home-a"),
        tls_context=ctx, timeout=2,
    )  # fmt: skip
    await _refused(foreign)
    # The scripts' certificate and password: accepted, and the server's name was verified.
    async with broker.client("gw-home-a") as ok:
        await ok.publish(topic("home-a", "status"), b"{}", qos=1)
    # Browsers: websockets over TLS with a password only.
    async with broker.client("dash-home-a", listener="ws"):
        pass


async def test_anonymous_on_loopback_reads_only_the_uptime(broker: DeployedMosquitto) -> None:
    async with reader(broker.client("audit"), "#") as audit:
        probe = await publish_as(broker, None, [topic("home-a", "status"), "x/y"], listener="loopback")
        assert not [m for m in await audit.until_sentinel(await sentinel_from(broker)) if m[1] == probe]
    async with reader(broker.client(None, listener="loopback"), f"{PREFIX}/#", "$SYS/broker/uptime") as anon:
        await sentinel_from(broker)
        await anon.wait_for(lambda t, _p: t == "$SYS/broker/uptime")
        await asyncio.sleep(0.2)  # the sentinel, had it been delivered, came before the uptime's next tick
        assert {t for t, _, _ in anon.seen} == {"$SYS/broker/uptime"}


# -------------------------------------------------------------------------------------- publishing


async def test_a_gateway_publishes_only_its_own_sites_records(broker: DeployedMosquitto) -> None:
    async with reader(broker.client("audit"), "#") as audit:
        kinds = ("onsets", "events", "gaps", "status", "live", "frames", "announce")
        own = [topic("home-a", k) for k in kinds]
        ok = await publish_as(broker, "gw-home-a", own)
        denied = await publish_as(
            broker,
            "gw-home-a",
            [
                topic("home-b", "events"),  # another site
                topic("home-b", "status"),
                "neurospasm/v2/home-a/p-0001/dev-1/events",  # outside its prefix
                f"{PREFIX}/home-a",  # not a device topic
                topic("home-a", "claim"),  # a worker's lease: not the gateway's to write
                topic("home-a", "cmd/session"),  # commands go *to* the gateway
                topic("home-a", "whatever"),
            ],
        )
        got = await audit.until_sentinel(await sentinel_from(broker))
    assert [t for t, p in got if p == ok] == own
    assert [t for t, p in got if p == denied] == []


def notices_topic(site: str) -> str:
    return f"{PREFIX}/{site}/dashboard/notices"


async def test_the_dashboard_publishes_its_sites_notices_and_nothing_else(broker: DeployedMosquitto) -> None:
    async with reader(broker.client("audit"), "#") as audit:
        for listener in ("tls", "ws"):
            ok = await publish_as(broker, "dash-home-a", [notices_topic("home-a")], listener=listener)
            denied = await publish_as(
                broker,
                "dash-home-a",
                [topic("home-a", k) for k in ("status", "events", "cmd/session", "claim")]
                + [
                    notices_topic("home-b"),  # another site's notices
                    f"{PREFIX}/home-a/dashboard/other",
                    f"{PREFIX}/home-a/dashboard/notices/x",
                    "neurospasm/v2/home-a/dashboard/notices",  # outside its prefix
                    "other",
                ],
                listener=listener,
            )
            got = await audit.until_sentinel(await sentinel_from(broker))
            assert [t for t, p in got if p == ok] == [notices_topic("home-a")], listener
            assert [t for t, p in got if p == denied] == [], listener
    # No other role of the site writes the dashboard's notices.
    async with reader(broker.client("audit"), "#") as audit:
        forged = [
            await publish_as(broker, account, [notices_topic("home-a")])
            for account in ("gw-home-a", "det-home-a", "ops-home-a", "dash-home-b")
        ]
        got = await audit.until_sentinel(await sentinel_from(broker))
        assert [t for t, p in got if p in forged] == []


async def test_an_operator_sends_commands_that_only_the_sites_gateway_reads(
    broker: DeployedMosquitto,
) -> None:
    cmd = topic("home-a", "cmd/session")
    async with (
        reader(broker.client("gw-home-a"), f"{PREFIX}/home-a/+/+/cmd/#") as gw_a,
        reader(broker.client("gw-home-b"), f"{PREFIX}/+/+/+/cmd/#") as gw_b,
    ):
        sent = await publish_as(broker, "ops-home-a", [cmd, topic("home-b", "cmd/session")])
        # Its own site's command reaches the gateway; the other site's was dropped (gw-home-b sees none).
        await gw_a.until_sentinel(sent)
        fence = await publish_as(broker, "ops-home-b", [topic("home-b", "cmd/session")])
        assert await gw_b.until_sentinel(fence) == []
        # The operator account reads nothing: not even the command topic it writes.
        async with reader(broker.client("ops-home-a"), f"{PREFIX}/#") as ops:
            await publish_as(broker, "ops-home-a", [cmd])
            await sentinel_from(broker)
            await asyncio.sleep(0.3)
            assert ops.seen == []


async def test_a_worker_leases_and_detects_only_within_its_site(broker: DeployedMosquitto) -> None:
    async with (
        reader(
            broker.client("det-home-a", v5=True),
            # the filters a worker with no site filter uses (ingest/worker.py), all sites wide
            f"$share/detectors/{PREFIX}/+/+/+/announce",
            f"{PREFIX}/+/+/+/claim",
            f"{PREFIX}/+/+/+/frames",
        ) as det,
        reader(broker.client("audit"), "#") as audit,
    ):
        a_in = [topic("home-a", "frames"), topic("home-a", "announce")]
        a_frames = await publish_as(broker, "gw-home-a", a_in)
        b_frames = await publish_as(
            broker, "gw-home-b", [topic("home-b", "frames"), topic("home-b", "announce")]
        )
        fence = await publish_as(broker, "det-home-a", [topic("home-a", "claim")])
        got = await det.until_sentinel(fence)
        assert [t for t, p in got if p == a_frames] == a_in
        assert [t for t, p in got if p == b_frames] == []
        # It writes the outputs and its claim on its site; no claim elsewhere, no frames, no commands.
        outputs = [topic("home-a", k) for k in ("onsets", "events", "gaps", "status", "live", "claim")]
        ok = await publish_as(broker, "det-home-a", outputs, v5=True)
        denied = await publish_as(
            broker, "det-home-a",
            [topic("home-b", "claim"), topic("home-b", "events"), topic("home-a", "frames"),
             topic("home-a", "cmd/session")],
            v5=True,
        )  # fmt: skip
        got = await audit.until_sentinel(await sentinel_from(broker))
        assert [t for t, p in got if p == ok] == outputs
        assert [t for t, p in got if p == denied] == []
        # Clear the retained claim so other tests start without it.
        async with broker.client("det-home-a") as c:
            await c.publish(topic("home-a", "claim"), b"", qos=1, retain=True)


def puback_reasons(broker: DeployedMosquitto, account: str, topics: list[str]) -> dict[str, int]:
    """MQTT 5 PUBACK reason code of a QoS 1 publish to each topic as ``account`` (< 0x80: accepted).

    MQTT 5 lets the broker tell the publisher: 0x87 "Not authorized" for an ACL-denied publish. paho
    directly, since aiomqtt does not return the reason code of a PUBACK.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    reasons: dict[int, int] = {}
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t5-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    c.username_pw_set(account, broker.password(account))
    c.tls_set_context(broker.tls(account))

    def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        reasons[mid] = int(rc.value)
        if len(reasons) == len(topics):
            done.set()

    c.on_publish = on_publish
    c.connect("localhost", broker.tls_port)
    c.loop_start()
    try:
        mids = {c.publish(t, b"probe", qos=1).mid: t for t in topics}
        assert done.wait(10), f"PUBACKs missing: {reasons}"
    finally:
        c.disconnect()
        c.loop_stop()
    return {mids[m]: rc for m, rc in reasons.items()}


def test_mqtt5_publishers_are_told_not_authorized(broker: DeployedMosquitto) -> None:
    not_authorized = 0x87
    got = puback_reasons(
        broker, "gw-home-a", [topic("home-a", "events"), topic("home-b", "events"), topic("home-a", "claim")]
    )
    # 0x10 "no matching subscribers" (or 0) is success; the rest were refused, and the gateway knows.
    assert got[topic("home-a", "events")] in (0x00, 0x10), got
    assert got[topic("home-b", "events")] == got[topic("home-a", "claim")] == not_authorized, got
    got = puback_reasons(
        broker,
        "dash-home-a",
        [
            topic("home-a", "status"),
            topic("home-a", "cmd/session"),
            notices_topic("home-b"),
            notices_topic("home-a"),
        ],
    )
    assert got.pop(notices_topic("home-a")) in (0x00, 0x10), got  # its own notices only
    assert set(got.values()) == {not_authorized}


# ----------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("listener", ["tls", "ws"])
async def test_nobody_reads_another_site(broker: DeployedMosquitto, listener: str) -> None:
    # A retained status of each site is there before anyone subscribes; then live records follow.
    status_a, status_b = b'{"site": "a"}', b'{"site": "b"}'
    async with broker.client("gw-home-a") as a, broker.client("gw-home-b") as b:
        await a.publish(topic("home-a", "status"), status_a, qos=1, retain=True)
        await b.publish(topic("home-b", "status"), status_b, qos=1, retain=True)
    wide = (f"{PREFIX}/#", f"{PREFIX}/home-b/#", f"{PREFIX}/+/+/+/events", "#")
    async with (
        reader(broker.client("dash-home-a", listener=listener), *wide) as dash_a,
        reader(broker.client("dash-home-b", listener=listener), f"{PREFIX}/home-b/#") as dash_b,
        reader(broker.client("gw-home-a"), *wide) as gw_a,  # a gateway reads no records at all
        reader(broker.client("det-home-a"), *wide) as det_a,
    ):
        b_events = await publish_as(broker, "gw-home-b", [topic("home-b", "events"), topic("home-b", "live")])
        b_fence = await sentinel_from(broker, "home-b")
        a_fence = await sentinel_from(broker, "home-a")
        # Site b's own dashboard gets b's retained status and records: the messages exist.
        got_b = await dash_b.until_sentinel(b_fence)
        assert (topic("home-b", "status"), status_b) in got_b
        assert [t for t, p in got_b if p == b_events] == [topic("home-b", "events"), topic("home-b", "live")]
        # Site a's dashboard, subscribed as wide as it can, gets only site a's (one copy per filter).
        got_a = await dash_a.until_sentinel(a_fence)
        assert got_a and {t for t, _ in got_a} == {topic("home-a", "status")}, got_a
        assert all(p == status_a for _, p in got_a)
        for other in (gw_a, det_a):
            await sentinel_from(broker, "home-a")
            await asyncio.sleep(0.3)
            assert [m for m in other.seen if not m[0].endswith("/frames")] == [], other.seen


# ------------------------------------------------------------------------------------ end to end


def mqtt_tables(broker: DeployedMosquitto, account: str, extra: str = "") -> str:
    """The [mqtt] and [mqtt.tls] tables of a gateway or worker config for ``account``, as deployed."""
    certs = broker.conf_dir / "certs"
    return f"""
[mqtt]
host = "localhost"
port = {broker.tls_port}
username = "{account}"
password_file = {json.dumps(str(broker.conf_dir / "secrets" / account))}
{extra}

[mqtt.tls]
enabled = true
ca_file = {json.dumps(str(certs / "ca.crt"))}
cert_file = {json.dumps(str(certs / "clients" / f"{account}.crt"))}
key_file = {json.dumps(str(certs / "clients" / f"{account}.key"))}
"""


def write_gateway_config(
    tmp: Path, broker: DeployedMosquitto, port_path: str, site: str, mqtt_extra: str = ""
) -> Path:
    cfg = tmp / "gateway.toml"
    cfg.write_text(
        f"""
[gateway]
site = "{site}"
patient = "p-0001"
state_dir = {json.dumps(str(tmp / "state"))}

[[devices]]
id = "dev-a"
transport = "serial"
port = {json.dumps(port_path)}

[influx]
enabled = false
"""
        + mqtt_tables(broker, f"gw-{site}", mqtt_extra)
    )
    return cfg


def spawn_in_own_session(argv: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A child in a session of its own, so that what it starts (the simulator) can be ended with it."""
    return subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)


@pytest.mark.slow
async def test_gateway_end_to_end_over_tls_with_the_scripts_credentials(
    broker: DeployedMosquitto, tmp_path: Path
) -> None:
    """The compose stack's gateway as it runs there (deploy/scripts/gateway-sim: simulator + `neurospasm
    run`), against the deployed broker with the scripts' account, certificate and password file."""
    link = tmp_path / "wearable"
    cfg = write_gateway_config(tmp_path, broker, str(link), "home-a")
    env = {
        **os.environ,
        "PATH": f"{Path(console_script()).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SIM_SCENARIO": "e2e_short",
        "SIM_LINK": str(link),
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "gw.log").open("wb")
    gw = spawn_in_own_session(["/bin/sh", str(SCRIPTS / "gateway-sim"), str(cfg)], env, log)

    def tail() -> str:
        return (tmp_path / "gw.log").read_text(errors="replace")[-4000:]

    try:
        async with (
            reader(broker.client("dash-home-a"), f"{PREFIX}/home-a/#") as dash_a,
            reader(broker.client("dash-home-b"), f"{PREFIX}/#") as dash_b,
        ):

            def events() -> list[dict[str, Any]]:
                return [json.loads(p) for t, p, _ in dash_a.seen if t.endswith("/dev-a/events")]

            async with asyncio.timeout(60):
                while len(events()) < 2:
                    assert gw.poll() is None, tail()
                    await asyncio.sleep(0.2)
            topics = {t for t, _, _ in dash_a.seen}
            assert {topic("home-a", k, "dev-a") for k in ("status", "events", "onsets", "live")} <= topics
            status = [json.loads(p) for t, p, _ in dash_a.seen if t.endswith("/dev-a/status")]
            assert any(s["state"] == "online" and s["monitoring"] for s in status)
            assert all(e["schema"] == "neurospasm.event/2" and e["device"] == "dev-a" for e in events())
            # The other site's dashboard, subscribed to everything, saw none of it.
            await sentinel_from(broker, "home-b")
            await asyncio.sleep(0.2)
            assert [t for t, _, _ in dash_b.seen if t.startswith(f"{PREFIX}/home-a/")] == [], dash_b.seen
            assert any(t.startswith(f"{PREFIX}/home-b/") for t, _, _ in dash_b.seen)  # it was reading
            # The gateway vanishes (power cut): the broker publishes its last will, which the ACL lets
            # through to its site's dashboard: "not monitored", never silence.
            gw.kill()  # the script exec'd the gateway: this pid is `neurospasm run`
            status_topic = topic("home-a", "status", "dev-a")
            await dash_a.wait_for(
                lambda t, p: t == status_topic and json.loads(p).get("state") == "offline", within_s=15
            )
            will = [json.loads(p) for t, p, _ in dash_a.seen if t == status_topic][-1]
            assert will["monitoring"] is False
    finally:
        if gw.poll() is None:
            gw.kill()
        rc = gw.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gw.pid, signal.SIGTERM)  # the simulator left in the group we started
        log.close()
    assert rc == -signal.SIGKILL, tail()


@pytest.mark.slow
async def test_central_worker_detects_for_a_forwarding_gateway_with_the_site_accounts(
    broker: DeployedMosquitto, tmp_path: Path
) -> None:
    """docs/scaling.md through the ACL: frames, announces, claims and outputs with det-/gw- accounts."""
    sim, port_path = start_sim(tmp_path, extra=["--loop"])
    wcfg = tmp_path / "worker.toml"
    wcfg.write_text(
        '[worker]\nid = "w-1"\ngroup = "detectors"\nsites = ["home-a"]\nlease_s = 6.0\nrenew_s = 2.0\n'
        + mqtt_tables(broker, "det-home-a", 'protocol = "5"')
    )
    procs: list[Proc] = []
    try:
        cfg = write_gateway_config(
            tmp_path, broker, port_path, "home-a", "publish_frames = true\ndetect_locally = false"
        )
        async with reader(broker.client("dash-home-a"), f"{PREFIX}/home-a/#") as dash:
            procs.append(Proc([console_script(), "worker", "--config", str(wcfg)], tmp_path / "worker.log"))
            procs.append(Proc([console_script(), "run", "--config", str(cfg)], tmp_path / "gw.log"))

            def of(kind: str) -> list[dict[str, Any]]:
                return [json.loads(p) for t, p, _ in dash.seen if t == topic("home-a", kind, "dev-a") and p]

            async with asyncio.timeout(60):
                while len(of("events")) < 2:
                    for p in procs:
                        assert p.p.poll() is None, p.tail()
                    await asyncio.sleep(0.2)
            claims = of("claim")
            assert claims and claims[-1]["worker"] == "w-1", claims
            assert any(s.get("worker", {}).get("id") == "w-1" and s["monitoring"] for s in of("status"))
            assert all(e["device"] == "dev-a" for e in of("events"))
    finally:
        rcs = [p.stop() for p in reversed(procs)]
        sim.stop()
    assert rcs == [0, 0], "\n".join(p.tail() for p in procs)


def write_dashboard_config(
    tmp: Path, broker: DeployedMosquitto, site: str, key_file: str | None = None
) -> Path:
    """deploy/dashboard.example.toml's [dashboard.mqtt] as an operator fills it in for the clinic
    broker: the site's dashboard account, its password file, the CA, its certificate and key, all
    given relative to the config file (which must not depend on the service's working directory)."""
    etc = tmp / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    account = f"dash-{site}"

    def rel(p: Path) -> str:
        return json.dumps(os.path.relpath(p, etc))

    certs = broker.conf_dir / "certs"
    key = key_file or rel(certs / "clients" / f"{account}.key")
    cfg = etc / "dashboard.toml"
    cfg.write_text(
        f"""
[dashboard]
bind = "{LOOPBACK}:{free_port()}"
state_dir = {json.dumps(str(tmp / "dash-state"))}
default_site = "{site}"
notice_eval_s = 0.2

[dashboard.notices]
tonic_longer_than_s = 5

[dashboard.mqtt]
host = "localhost"
port = {broker.tls_port}
topic_prefix = "{PREFIX}"
username = "{account}"
password_file = {rel(broker.conf_dir / "secrets" / account)}

[dashboard.mqtt.tls]
enabled = true
ca_file = {rel(certs / "ca.crt")}
cert_file = {rel(certs / "clients" / f"{account}.crt")}
key_file = {key}
"""
    )
    return cfg


def http_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def test_the_dashboard_reads_its_site_over_tls_and_its_notices_pass_the_acl(
    broker: DeployedMosquitto, tmp_path: Path
) -> None:
    """`neurospasm dashboard` with the scripts' certificate and password against the deployed broker:
    a gateway's status and events reach its API, and the notice it raises is delivered."""
    cfg = write_dashboard_config(tmp_path, broker, "home-a")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # A key file that is not there: one line naming the key, before any connection attempt.
    bad_cfg = write_dashboard_config(tmp_path / "bad", broker, "home-a", '"nope.key"')
    bad = await asyncio.create_subprocess_exec(
        console_script(), "dashboard", "--config", str(bad_cfg),
        cwd=elsewhere, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err_bytes = await bad.communicate()
    err = err_bytes.decode()
    assert bad.returncode == 2 and "dashboard.mqtt.tls.key_file: cannot read" in err, err
    assert len(err.strip().splitlines()) == 1 and str(bad_cfg.parent / "nope.key") in err, err

    url_file = tmp_path / "url"
    log_path = tmp_path / "dashboard.log"
    log = log_path.open("wb")
    dash = await asyncio.create_subprocess_exec(
        console_script(), "dashboard", "--config", str(cfg),
        cwd=elsewhere,  # relative paths in the file must not be taken from here
        stdout=log, stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NEUROSPASM_DASHBOARD_URL_FILE": str(url_file)},
    )  # fmt: skip

    def tail() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    device = f"dev-{uuid.uuid4().hex[:6]}"
    status_topic = topic("home-a", "status", device)
    now = datetime.now(UTC)
    onset = (now - timedelta(seconds=20)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event_id = str(uuid.uuid4())
    event = {
        "schema": "neurospasm.event/2", "id": event_id, "device": device, "type": "tonic",
        "channel": "EMG L quad", "onset": onset, "offset": onset, "duration_s": 12.0,
        "peak_uv": 300.0, "mean_uv": 100.0, "baseline_uv": 3.0, "relative_amplitude": 100.0,
        "frequency_hz": None, "confidence": 1.0, "detector": {"version": "1", "config_hash": "x"},
    }  # fmt: skip
    status = {
        "schema": "neurospasm.status/1", "device": device, "state": "online", "monitoring": True,
        "updated": now.isoformat().replace("+00:00", "Z"), "battery_pct": 87,
        "contact": {"EMG L quad": True}, "loss_pct": 0.0, "spool": {"bytes": 0}, "link": {"reconnects": 0},
    }  # fmt: skip
    try:
        async with (
            reader(broker.client("audit"), notices_topic("home-a"), notices_topic("home-b")) as audit,
            reader(broker.client("dash-home-b"), f"{PREFIX}/#") as dash_b,
        ):
            async with asyncio.timeout(30):
                while not url_file.exists():
                    assert dash.returncode is None, tail()
                    await asyncio.sleep(0.1)
                base = url_file.read_text().strip()
                # Connected and subscribed over TLS (the broker refuses anything less on this port).
                while not (await asyncio.to_thread(http_json, base + "api/me"))["broker"]["connected"]:
                    assert dash.returncode is None, tail()
                    await asyncio.sleep(0.1)
            async with broker.client("gw-home-a") as gw:
                await gw.publish(status_topic, json.dumps(status), qos=1)
                await gw.publish(topic("home-a", "events", device), json.dumps(event), qos=1)

            def patient() -> dict[str, Any] | None:
                rows = http_json(base + "api/patients")["patients"]
                return next((p for p in rows if any(d["device"] == device for d in p["devices"])), None)

            async with asyncio.timeout(15):
                while (p := await asyncio.to_thread(patient)) is None or p["last_event"] is None:
                    assert dash.returncode is None, tail()
                    await asyncio.sleep(0.1)
            (dev,) = [d for d in p["devices"] if d["device"] == device]
            assert (p["site"], p["patient"], dev["state"], dev["monitoring"]) == (
                "home-a",
                "p-0001",
                "online",
                True,
            )
            assert p["last_event"]["id"] == event_id and p["today"]
            # The 12 s tonic spasm breaks the 5 s rule: the dashboard publishes a notice on its
            # site's notices topic, and the ACL lets it through.
            await audit.wait_for(lambda t, _p: t == notices_topic("home-a"))
            (notice,) = [json.loads(pl) for t, pl, _ in audit.seen]
            assert notice["schema"] == "neurospasm.notice/1" and notice["rule"] == "tonic_long"
            assert (notice["site"], notice["patient"], notice["device"]) == ("home-a", "p-0001", device)
            listed = await asyncio.to_thread(http_json, base + "api/notices")
            assert notice["id"] in json.dumps(listed)
            # The other site's dashboard saw none of it.
            await sentinel_from(broker, "home-b")
            await asyncio.sleep(0.2)
            assert not [t for t, _, _ in dash_b.seen if "/home-a/" in t], dash_b.seen
    finally:
        if dash.returncode is None:
            dash.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                rc = await dash.wait()
        except TimeoutError:
            dash.kill()
            rc = await dash.wait()
        log.close()
    assert rc == 0, tail()
    assert "retrying" not in tail(), tail()  # connected at the first attempt


# --------------------------------------------------------------------------------------- scripts


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_scripts_are_idempotent_and_refuse_bad_input(tmp_path: Path) -> None:
    d = tmp_path / "cfg"
    d.mkdir()
    res = run_script("add-site", "--config-dir", str(d), "home-x")
    assert res.returncode == 1 and "mqtt-certs" in res.stderr  # no CA yet: says what to run
    assert run_script("mqtt-certs", str(d / "certs"), "--server", "mqtt.example,10.0.0.5").returncode == 0
    assert run_script("add-site", "--config-dir", str(d), "home-x", "home-y").returncode == 0
    first = _snapshot(d)
    again = run_script("add-site", "--config-dir", str(d), "home-x", "home-y")
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout and _snapshot(d) == first
    # The hashes are PBKDF2-SHA512 (Mosquitto's $7$), no password in clear in the password file.
    passwd = (d / "passwd").read_text()
    assert sorted(line.split(":")[0] for line in passwd.splitlines()) == sorted(
        ["gw-home-x", "dash-home-x", "gw-home-y", "dash-home-y"]
    )
    for line in passwd.splitlines():
        user, hashed = line.split(":", 1)
        assert hashed.startswith("$7$") and (d / "secrets" / user).read_text() not in hashed
        assert (d / "secrets" / user).stat().st_mode & 0o077 == 0
    assert (d / "certs" / "server.key").stat().st_mode & 0o077 == 0
    san = subprocess.run(
        ["openssl", "x509", "-in", str(d / "certs" / "server.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:mqtt.example" in san and "IP Address:10.0.0.5" in san
    # Adding a site keeps the others in the ACL.
    assert run_script("mqtt-acl", str(d), "home-z").returncode == 0
    acl = (d / "acl").read_text()
    assert all(f"user gw-{s}\n" in acl for s in ("home-x", "home-y", "home-z"))
    assert "@SITE@" not in acl and "@PREFIX@" not in acl
    # Clear one-line errors naming what is wrong.
    bad = run_script("mqtt-acl", str(d), "home/../x")
    assert bad.returncode == 1 and "site 'home/../x'" in bad.stderr
    bad = run_script("mqtt-acl", "--prefix", "neurospasm/#", str(d), "home-x")
    assert bad.returncode == 1 and "--prefix" in bad.stderr
    bad = run_script("mqtt-user", str(d / "passwd"), "admin")
    assert bad.returncode == 1 and "admin" in bad.stderr
    bad = run_script("mqtt-certs", str(d / "certs"), "--server", "other.example")
    assert bad.returncode == 1 and "server.crt" in bad.stderr and "other.example" in bad.stderr
    (d / "secrets" / "gw-home-x").unlink()
    bad = run_script("mqtt-user", str(d / "passwd"), "gw-home-x")
    assert bad.returncode == 1 and "--rotate" in bad.stderr
    rotated = run_script("mqtt-user", "--rotate", str(d / "passwd"), "gw-home-x")
    assert rotated.returncode == 0 and (d / "secrets" / "gw-home-x").read_text()
    # A given password goes in on stdin (not argv) and is kept for the client.
    given = run_script(
        "mqtt-user", str(d / "passwd"), "det-home-x", env={"MQTT_PASSWORD": "a-long-given-password"}
    )
    assert given.returncode == 0 and (d / "secrets" / "det-home-x").read_text() == "a-long-given-password"
