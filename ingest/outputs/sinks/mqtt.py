"""MQTT sink on aiomqtt 2.x: QoS 1 publishes confirmed by the broker, retained status, last will.

One client per device, so each device's status topic carries its own last will ("offline" when
the gateway vanishes without a goodbye) and one device's trouble never blocks another's queue.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiomqtt
import paho.mqtt.client as paho_client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.config import MqttSection, read_secret
from ingest.outputs.encoders import last_will
from ingest.outputs.sinks.base import SinkUnavailable

_HDR = struct.Struct("<BBH")


def encode_message(topic: str, payload: bytes, qos: int, retain: bool) -> bytes:
    """One MQTT message as a spool record: qos, retain, topic length, topic, payload."""
    t = topic.encode("utf-8")
    return _HDR.pack(qos, int(retain), len(t)) + t + payload


def decode_message(record: bytes) -> tuple[str, bytes, int, bool]:
    qos, retain, n = _HDR.unpack_from(record)
    topic = record[_HDR.size : _HDR.size + n].decode("utf-8")
    return topic, record[_HDR.size + n :], qos, bool(retain)


def tls_context(ca_file: object, cert_file: object, key_file: object, insecure: bool) -> ssl.SSLContext:
    """A client TLS context: system CAs or the given CA, optional client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    if insecure:
        ctx.check_hostname = False
    return ctx


def connection_kwargs(cfg: MqttSection) -> dict[str, Any]:
    """Where and how to connect (host, port, credentials, TLS, keepalive): shared by every client
    the gateway and the workers open, so security settings cannot differ between them."""
    tls = None
    if cfg.tls.enabled:
        tls = tls_context(cfg.tls.ca_file, cfg.tls.cert_file, cfg.tls.key_file, cfg.tls.insecure)
    return {
        "hostname": cfg.host,
        "port": cfg.port,
        "username": cfg.username,
        "password": read_secret(cfg.password, cfg.password_file, "mqtt.password_file"),
        "keepalive": cfg.keepalive_s,
        "tls_context": tls,
        "tls_insecure": cfg.tls.insecure if cfg.tls.enabled else None,
    }


@dataclass
class MqttSink:
    """Publishes spool records of one device. ``status_topic`` gets the retained last will."""

    cfg: MqttSection
    client_id: str
    status_topic: str
    device: str
    name: str = "mqtt"
    publish_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        self._client: aiomqtt.Client | None = None

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        will_payload = last_will(self.device)
        props = None
        if v5:
            # Keep our session (and so undelivered QoS 1 state) for a day across reconnects.
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if cfg.clean_session else 86400
        return aiomqtt.Client(
            **connection_kwargs(cfg),
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.status_topic, will_payload, qos=1, retain=True),
            clean_session=None if v5 else cfg.clean_session,
            # paho refuses any clean_start value but its default on MQTT 3.1.1
            clean_start=cfg.clean_session if v5 else paho_client.MQTT_CLEAN_START_FIRST_ONLY,
            timeout=self.publish_timeout_s,
            properties=props,
        )

    async def __aenter__(self) -> Self:
        client = self._make_client()
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise SinkUnavailable(f"MQTT broker {self.cfg.host}:{self.cfg.port}: {exc}") from exc
        self._client = client
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(et, e, tb)
            except aiomqtt.MqttError:
                pass  # the connection was already gone; nothing left to release

    async def send(self, records: list[bytes]) -> None:
        client = self._client
        if client is None:
            raise SinkUnavailable("MQTT client is not connected")
        try:
            # Issue all publishes, then wait for every PUBACK: paho keeps them in order on the wire.
            await asyncio.gather(
                *(
                    client.publish(topic, payload, qos=qos, retain=retain)
                    for topic, payload, qos, retain in map(decode_message, records)
                )
            )
        except aiomqtt.MqttError as exc:
            raise SinkUnavailable(f"MQTT publish failed: {exc}") from exc

    async def publish_now(self, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Best-effort publish outside the spool (live stream). False if not connected."""
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos)
        except aiomqtt.MqttError:
            return False
        return True
