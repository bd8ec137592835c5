"""Gateway configuration: one TOML file, validated at start.

Every key is documented in ``deploy/gateway.example.toml``. Unknown keys are errors (a typo must
not silently fall back to a default on a box nobody watches), and every error is one line that
names the file and the dotted key at fault.

Configuration files are read by one function (``load_toml``) and fail with one error type
(``ConfigError``), both from ``detectors.configfile``, the one room every other may import: the
gateway, the central worker (``ingest.commands.worker``), the simulator's scenarios
(``firmware_sim.scenario``) and the ``[detector]`` settings all go through them, so every mistake
is the same kind of line for every caller. What is checked at load, not at the first connection
attempt: secret files are readable, relative paths are taken relative to the config file, TLS
files are not set with TLS off (a warning), and ``check_state_dir`` says in one line when the
state directory is not writable.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detectors import DetectorConfig
from detectors.config import ConfigError
from detectors.configfile import format_errors, load_toml
from ingest.pseudonyms import PSEUDONYM_PATTERN

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "GatewayConfig", "check_dirs", "check_state_dir", "load_config", "load_toml"]

#: Pseudonymous identifiers only: they end up in MQTT topics and InfluxDB tags.
_ID = PSEUDONYM_PATTERN
Ident = Annotated[str, Field(pattern=_ID)]


_M = TypeVar("_M", bound=BaseModel)
#: Where every key is documented (named after an unknown key).
EXAMPLE = "deploy/gateway.example.toml"


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


class DeclaredSlot(_Model):
    """A planned exercise/physiotherapy session, declared to the detector every week on ``days``
    at local time ``at`` for ``minutes`` (issue 9; the MQTT ``cmd/declare`` is the ad-hoc way)."""

    kind: Literal["exercise", "physiotherapy"] = "exercise"
    at: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    minutes: float = Field(gt=0, le=600)
    #: Weekdays (``mon`` .. ``sun``); empty: every day.
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = []

    @model_validator(mode="after")
    def _within_a_day(self) -> DeclaredSlot:
        h, m = (int(x) for x in self.at.split(":"))
        if h * 60 + m + self.minutes > 24 * 60:
            raise ValueError(f"declared session at {self.at} for {self.minutes:g} min crosses midnight")
        return self


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
    #: Reach the device through the BLE bridge of a simulator in another process (the Unix socket
    #: of ``neurospasm sim --ble-socket PATH``) instead of the machine's Bluetooth adapter.
    #: Relative paths are taken relative to the config file. For tests and development.
    ble_bridge: Path | None = None
    #: Reconnect backoff: first delay and cap (jittered exponential, ``ingest.outputs.delivery.Backoff``).
    reconnect_initial_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    #: Vendor settings of this kind (``ingest.wire.kinds.options_of``: a Cyton's gain, a Shimmer's
    #: rate, ...), checked per kind and passed to its decoder and start commands.
    options: dict[str, Any] = {}
    #: Planned exercise/physiotherapy sessions (``DeclaredSlot``), declared to the detector.
    declared: list[DeclaredSlot] = []

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from ingest.wire.kinds import device_kinds

        if v not in device_kinds():
            raise ValueError(f"unknown device kind {v!r} (known: {', '.join(device_kinds())})")
        return v

    @field_validator("ble_bridge")
    @classmethod
    def _bridge_path(cls, v: Path | None) -> Path | None:
        if v is None:
            return v
        if not str(v).strip() or str(v) == ".":
            raise ValueError("must be the path of a simulator's BLE bridge socket")
        if len(os.fsencode(v)) > 107:
            raise ValueError(f"{v}: longer than a Unix socket path may be (107 bytes)")
        if v.is_absolute() and v.exists() and not stat.S_ISSOCK(v.stat().st_mode):
            raise ValueError(f"{v} exists and is not a socket (neurospasm sim --ble-socket makes one)")
        return v

    @model_validator(mode="after")
    def _where(self) -> DeviceSection:
        if self.ble_bridge is not None and self.transport != "ble":
            raise ValueError(
                f"ble_bridge is set but transport = {self.transport!r}: the bridge is a BLE link"
            )
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
    #: Downsampled EMG envelope for dashboards on ``.../live`` (QoS 0, never spooled).
    live: bool = True
    live_rate_hz: float = Field(10.0, gt=0, le=100)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "+#") or v.startswith("/") or v.endswith("/"):
            raise ValueError("must be a plain topic path without wildcards or leading/trailing '/'")
        return v


class ScalingSection(_Model):
    """Central workers (docs/scaling.md): what this gateway forwards, and whether it detects."""

    #: Also publish each device's link bytes on ``.../frames`` for central workers.
    publish_frames: bool = False
    #: Run the detector here too; false makes the gateway a forwarder (needs publish_frames).
    detect_locally: bool = True
    #: How often each device is announced on ``.../announce`` so a worker leases it.
    announce_interval_s: float = Field(2.0, gt=0, le=60)


#: Keys that moved out of ``[mqtt]``: a one-line error naming the new place, not a silent default.
MOVED_KEYS = {
    ("mqtt", k): ("scaling", k) for k in ("publish_frames", "detect_locally", "announce_interval_s")
}


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
    #: "lines": line-protocol files per UTC day; "sqlite": {directory}/history.sqlite, which the
    #: dashboard queries (ingest.outputs.sinks.sqlite). Both hold what InfluxDB would get.
    format: Literal["lines", "sqlite"] = "lines"


class SeriesSection(_Model):
    """What the time-series sinks (InfluxDB, local store) get: one place for every series sink."""

    #: EMG envelope points per second and channel.
    envelope_rate_hz: float = Field(50.0, gt=0, le=500)
    #: Also store raw sEMG (large: the full EMG rate x channels).
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
    series: SeriesSection = SeriesSection()
    scaling: ScalingSection = ScalingSection()
    spool: SpoolSection = SpoolSection()

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for (old, key), (new, new_key) in MOVED_KEYS.items():
                section = data.get(old)
                if isinstance(section, dict) and key in section:
                    raise ValueError(f"{old}.{key}: moved: set it as {new}.{new_key} (a [{new}] table)")
        return data

    @model_validator(mode="before")
    @classmethod
    def _old_series_keys(cls, data: Any) -> Any:
        """``[influx]``/``[local]`` ``envelope_rate_hz`` and ``raw_emg`` (before ``[series]``):
        still accepted, moved to ``[series]`` with a deprecation warning."""
        if not isinstance(data, dict):
            return data
        moved: dict[str, Any] = {}
        out = dict(data)
        for section in ("influx", "local"):
            sec = out.get(section)
            if not isinstance(sec, dict) or not {"envelope_rate_hz", "raw_emg"} & set(sec):
                continue
            sec = dict(sec)
            for key in ("envelope_rate_hz", "raw_emg"):
                if key in sec:
                    value = sec.pop(key)
                    log.warning("config: %s.%s is deprecated: use series.%s", section, key, key)
                    if key == "raw_emg":
                        moved[key] = bool(moved.get(key)) or value
                    else:
                        moved.setdefault(key, value)
            out[section] = sec
        if moved:
            series = out.get("series")
            out["series"] = {**moved, **series} if isinstance(series, dict) else moved
        return out

    @model_validator(mode="after")
    def _someone_detects(self) -> GatewayConfig:
        sc = self.scaling
        if not sc.detect_locally and not (self.mqtt.enabled and sc.publish_frames):
            raise ValueError(
                "scaling.detect_locally: false needs mqtt.enabled = true and scaling.publish_frames = "
                "true: otherwise nothing would detect spasms"
            )
        return self

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


def read_secret(value: str | None, path: Path | None, what: str) -> str | None:
    """A secret given inline or, better, in a file readable only by the gateway's user."""
    if path is None:
        return value
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read secret file {path}: {exc.strerror}") from exc


def validate_model(model: type[_M], data: Any, source: str, reference: str = EXAMPLE) -> _M:
    """``model.model_validate(data)``, every problem one ``file: dotted.key: message`` line
    (an unknown key names ``reference``, the example file that documents every key)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # One line per problem, ``file: dotted.key: message``; a typo points at the example file.
        raise ConfigError(format_errors(source, exc.errors(), reference=reference)) from None


def detector_config(data: dict[str, Any], source: str) -> DetectorConfig:
    """The ``[detector]`` table of a config file, errors naming the file and the dotted key
    (``gw.toml: detector.on_ratio: ...``)."""
    if not data:
        return DetectorConfig()
    return DetectorConfig.from_dict(data, source=source, prefix="detector.")


def parse_config(data: dict[str, Any], source: str = "<config>") -> GatewayConfig:
    """Validate a gateway config: every mistake, ``[detector]``'s included, one line each."""
    try:
        cfg = validate_model(GatewayConfig, data, source)
    except ConfigError as exc:
        # The [detector] table is checked by its own dataclass; report its mistakes too, so one
        # run of the command names every problem in the file, not the gateway's half of them.
        table = data.get("detector") if isinstance(data, dict) else None
        if isinstance(table, dict):
            try:
                detector_config(table, source)
            except ConfigError as more:
                raise ConfigError(f"{exc}\n{more}") from None
        raise
    detector_config(cfg.detector, source)  # a [detector] mistake is a config error, at load
    return cfg


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway TOML file; raise ConfigError naming file and key."""
    p = Path(path)
    cfg = parse_config(load_toml(p), str(p))
    # Relative paths in the file are relative to the file, not to wherever the service started.
    cfg = _rebase(cfg, p.resolve().parent)
    # TLS files set with TLS off: said now (secret files are checked by ``check_files``, at the
    # start of the gateway: a config may be validated on another machine than it runs on).
    given = [k for k in ("ca_file", "cert_file", "key_file") if getattr(cfg.mqtt.tls, k) is not None]
    if given and not cfg.mqtt.tls.enabled:
        log.warning(
            "%s: mqtt.tls.%s is set but mqtt.tls.enabled = false: the connection is NOT encrypted",
            p,
            given[0],
        )
    return cfg


def _fix(base: Path, x: Path | None) -> Path | None:
    return x if x is None or x.is_absolute() else base / x


def _rebase(cfg: GatewayConfig, base: Path) -> GatewayConfig:
    def fix(x: Path | None) -> Path | None:
        return _fix(base, x)

    gw = cfg.gateway.model_copy(update={"state_dir": fix(cfg.gateway.state_dir)})
    updates: dict[str, Any] = {"gateway": gw}
    if cfg.spool.directory is not None:
        updates["spool"] = cfg.spool.model_copy(update={"directory": fix(cfg.spool.directory)})
    if cfg.local.directory is not None:
        updates["local"] = cfg.local.model_copy(update={"directory": fix(cfg.local.directory)})
    updates["mqtt"] = rebase_mqtt(cfg.mqtt, base)
    updates["devices"] = [
        d.model_copy(update={"ble_bridge": fix(d.ble_bridge)}) if d.ble_bridge is not None else d
        for d in cfg.devices
    ]
    updates["influx"] = cfg.influx.model_copy(
        update={k: fix(getattr(cfg.influx, k)) for k in ("token_file", "password_file", "ca_file")}
    )
    return cfg.model_copy(update=updates)


def rebase_mqtt(m: MqttSection, base: Path) -> MqttSection:
    """An ``[mqtt]`` section's file paths relative to the config file's directory ``base``."""
    tls = m.tls.model_copy(
        update={k: _fix(base, getattr(m.tls, k)) for k in ("ca_file", "cert_file", "key_file")}
    )
    return m.model_copy(update={"password_file": _fix(base, m.password_file), "tls": tls})


def check_mqtt_files(m: MqttSection, source: str, key: str = "mqtt") -> None:
    if m.enabled:
        _readable(m.password_file, source, f"{key}.password_file")
        if m.tls.enabled:
            for k in ("ca_file", "cert_file", "key_file"):
                _readable(getattr(m.tls, k), source, f"{key}.tls.{k}")


def check_files(cfg: GatewayConfig, source: str) -> None:
    """Secret and TLS files named in the config exist and are readable: a missing one is one
    line now, not a traceback on every connection attempt."""
    check_mqtt_files(cfg.mqtt, source)
    if cfg.influx.enabled:
        for k in ("token_file", "password_file", "ca_file"):
            _readable(getattr(cfg.influx, k), source, f"influx.{k}")


def _readable(path: Path | None, source: str, key: str) -> None:
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{source}: {key}: cannot read {path}: {exc.strerror or exc}") from None


def check_state_dir(directory: Path, source: str, key: str = "gateway.state_dir") -> None:
    """The state directory can be created and written, or one ConfigError line saying why."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".write-test-", dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ConfigError(f"{source}: {key}: {directory} is not writable: {exc.strerror or exc}") from None


def check_dirs(cfg: GatewayConfig, source: str) -> None:
    """Every directory the gateway will write (state, spool, local store) can be created and
    written, or one ConfigError line naming the key: found at the start, not as a sink that
    pauses delivery for ever (the local store) or a traceback from deep inside the spool."""
    check_state_dir(cfg.gateway.state_dir, source)
    if cfg.spool.directory is not None:
        check_state_dir(cfg.spool.directory, source, "spool.directory")
    if cfg.local.enabled and cfg.local.directory is not None:
        check_state_dir(cfg.local.directory, source, "local.directory")


# -- command-line values: one line naming the argument, through argparse (exit code 2) -------------
