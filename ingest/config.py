"""Gateway configuration: one TOML file, validated at start.

Every key is documented in ``deploy/gateway.example.toml``. Unknown keys are errors (a typo must
not silently fall back to a default on a box nobody watches), and every error is one line that
names the file and the dotted key at fault.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["ConfigError", "GatewayConfig", "load_config"]

#: Pseudonymous identifiers only: they end up in MQTT topics and InfluxDB tags.
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Ident = Annotated[str, Field(pattern=_ID)]


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid. The message is one line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Model):
    site: Ident = "home"
    patient: Ident = "patient"
    state_dir: Path = Path("var/neurospasm")
    #: Seconds without a single frame before a device counts as stale ("monitoring inactive").
    stale_after_s: float = Field(5.0, gt=0)
    #: Frames a device link may hold before the oldest are dropped (and counted).
    queue_size: int = Field(4096, ge=16)
    #: Longest wait between delivery retries to a sink that is down (jittered exponential backoff).
    retry_max_s: float = Field(10.0, gt=0)


class DeviceSection(_Model):
    id: Ident
    #: Which wire protocol the device speaks (``ingest.wire.base.DECODERS``): our own wearable
    #: ("neurospasm") or a vendor's.
    kind: str = "neurospasm"
    transport: Literal["serial", "ble"] = "serial"
    # serial
    port: str = ""
    baudrate: int = Field(921600, gt=0)
    usb_vid: int | None = None
    usb_pid: int | None = None
    # ble
    address: str = ""
    name: str = ""
    service_uuid: str = ""
    #: Reconnect backoff: first delay, cap, and jitter fraction.
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from ingest.wire.kinds import device_kinds

        if v not in device_kinds():
            raise ValueError(f"unknown device kind {v!r} (known: {', '.join(device_kinds())})")
        return v

    @model_validator(mode="after")
    def _where(self) -> DeviceSection:
        if self.transport == "serial" and not self.port and (self.usb_vid is None or self.usb_pid is None):
            raise ValueError("a serial device needs 'port' or both 'usb_vid' and 'usb_pid'")
        if self.transport == "ble" and not (self.address or self.name or self.service_uuid):
            raise ValueError("a BLE device needs 'address', 'name' or 'service_uuid'")
        from ingest.wire.kinds import check_device_settings  # per-kind links, baud rate, defaults

        return check_device_settings(self)


class TlsSection(_Model):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Only for test benches: skips certificate host name checks.
    insecure: bool = False


class MqttSection(_Model):
    enabled: bool = True
    host: str = "localhost"
    port: int = Field(1883, gt=0, lt=65536)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    tls: TlsSection = TlsSection()
    topic_prefix: str = "neurospasm/v1"
    keepalive_s: int = Field(30, ge=5)
    #: Persistent session: the broker keeps QoS 1 state for us across reconnects.
    clean_session: bool = False
    #: Downsampled envelope + accelerometer for dashboards (QoS 0, never spooled).
    live: bool = True
    live_rate_hz: float = Field(10.0, gt=0, le=100)
    #: Also publish each device's link bytes on ``.../frames`` for central workers (docs/scaling.md).
    publish_frames: bool = False
    #: Run the detector here too; false makes the gateway a forwarder (needs publish_frames).
    detect_locally: bool = True
    #: How often each device is announced on ``.../announce`` so a worker leases it.
    announce_interval_s: float = Field(2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _someone_detects(self) -> MqttSection:
        if not self.detect_locally and not (self.enabled and self.publish_frames):
            raise ValueError(
                "detect_locally = false needs enabled = true and publish_frames = true: "
                "otherwise nothing would detect spasms"
            )
        return self

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "+#") or v.startswith("/") or v.endswith("/"):
            raise ValueError("must be a plain topic path without wildcards or leading/trailing '/'")
        return v


class InfluxSection(_Model):
    enabled: bool = False
    api: Literal["v2", "v1"] = "v2"
    url: str = "http://localhost:8086"
    # v2 / v3 API (/api/v2/write)
    token: str | None = None
    token_file: Path | None = None
    org: str = ""
    bucket: str = "neurospasm"
    # v1 API (/write)
    database: str = "neurospasm"
    retention_policy: str = ""
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    verify_tls: bool = True
    gzip: bool = True
    batch_lines: int = Field(5000, ge=1)
    flush_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    envelope_rate_hz: float = Field(50.0, gt=0, le=500)
    raw_emg: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")


class LocalSection(_Model):
    """Local storage of what would go to InfluxDB (line protocol files): the demo's database."""

    enabled: bool = False
    directory: Path | None = None
    envelope_rate_hz: float = Field(50.0, gt=0, le=500)
    raw_emg: bool = False


class SpoolSection(_Model):
    directory: Path | None = None
    quota_mb: float = Field(1024.0, gt=0)
    fsync: Literal["always", "batch", "never"] = "batch"


class GatewayConfig(_Model):
    gateway: GatewaySection = GatewaySection()
    devices: list[DeviceSection] = Field(default_factory=list)
    detector: dict[str, Any] = Field(default_factory=dict)
    mqtt: MqttSection = MqttSection()
    influx: InfluxSection = InfluxSection()
    local: LocalSection = LocalSection()
    spool: SpoolSection = SpoolSection()

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        ids = [d.id for d in self.devices]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"device ids must be unique, repeated: {', '.join(sorted(dup))}")
        return self

    @property
    def spool_dir(self) -> Path:
        return self.spool.directory or self.gateway.state_dir / "spool"

    @property
    def local_dir(self) -> Path:
        return self.local.directory or self.gateway.state_dir / "series"


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``file: dotted.key: message``."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against deploy/gateway.example.toml)"
        lines.append(f"{source}: {_loc(loc)}: {msg}")
    return "\n".join(lines)


def read_secret(value: str | None, path: Path | None, what: str) -> str | None:
    """A secret given inline or, better, in a file readable only by the gateway's user."""
    if path is None:
        return value
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read secret file {path}: {exc.strerror}") from exc


def parse_config(data: dict[str, Any], source: str = "<config>") -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway TOML file; raise ConfigError naming file and key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    cfg = parse_config(data, str(p))
    # Relative paths in the file are relative to the file, not to wherever the service started.
    base = p.resolve().parent
    return _rebase(cfg, base)


def _rebase(cfg: GatewayConfig, base: Path) -> GatewayConfig:
    def fix(x: Path | None) -> Path | None:
        return x if x is None or x.is_absolute() else base / x

    gw = cfg.gateway.model_copy(update={"state_dir": fix(cfg.gateway.state_dir)})
    updates: dict[str, Any] = {"gateway": gw}
    if cfg.spool.directory is not None:
        updates["spool"] = cfg.spool.model_copy(update={"directory": fix(cfg.spool.directory)})
    if cfg.local.directory is not None:
        updates["local"] = cfg.local.model_copy(update={"directory": fix(cfg.local.directory)})
    return cfg.model_copy(update=updates)
