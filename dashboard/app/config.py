"""The dashboard's settings: a ``[dashboard]`` TOML table, or command-line flags over defaults.

Example (``deploy/dashboard.example.toml`` style)::

    [dashboard]
    bind = "0.0.0.0:8080"            # not loopback: a users file is then required
    users_file = "/var/lib/neurospasm/dashboard-users.json"
    state_dir = "/var/lib/neurospasm/dashboard"   # reviews, notices, acknowledgements
    store = "sqlite:/var/lib/neurospasm/history.sqlite"   # or "influx:http://db:8086/neurospasm"
    stale_after_s = 25
    session_idle_min = 30

    [dashboard.mqtt]
    host = "mqtt.clinic.example"
    port = 8883
    topic_prefix = "neurospasm/v1"
    username = "dash-home-0001"
    password_file = "secrets/dash-home-0001"   # relative paths: relative to this file

    [dashboard.mqtt.tls]                        # as the gateway's [mqtt.tls]
    enabled = true
    ca_file = "certs/ca.crt"
    cert_file = "certs/dash-home-0001.crt"
    key_file = "certs/dash-home-0001.key"
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detectors.configfile import ConfigError, format_errors, load_toml

log = logging.getLogger("neurospasm.dashboard")

__all__ = ["DashboardConfig", "DashboardConfigError", "MqttSettings", "MqttTls", "load_dashboard_config"]


class DashboardConfigError(ConfigError):
    """One line naming the file and key at fault: a ``ConfigError`` like every configuration
    mistake (``detectors.configfile``), formatted the same way."""


class MqttTls(BaseModel):
    """``[dashboard.mqtt.tls]``: the same keys as the gateway's ``[mqtt.tls]`` (the clinic broker's
    TLS listener wants the CA that signed it and a client certificate of that CA)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    ca_file: Path | None = None  # None: the system's CAs
    cert_file: Path | None = None
    key_file: Path | None = None
    #: Only for test benches: skips the check of the broker's host name against its certificate.
    insecure: bool = False

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is set without cert_file (the client certificate it belongs to)")
        return self


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "neurospasm/v1"
    username: str | None = None
    #: Inline password (tests, benches); prefer ``password_file``, readable by the dashboard only.
    password: str | None = None
    password_file: Path | None = None
    tls: MqttTls = Field(default_factory=MqttTls)

    @model_validator(mode="after")
    def _one_password(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are both set: keep one (password_file)")
        return self

    def secret(self) -> str | None:
        """The password, read from ``password_file`` now (so a rotated secret is picked up on restart).
        A missing file is one ``ValueError`` line naming the key, not a traceback at every retry."""
        if self.password_file is None:
            return self.password
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"dashboard.mqtt.password_file: cannot read {self.password_file}: {exc.strerror or exc}"
            ) from None

    def tls_parameters(self) -> aiomqtt.TLSParameters | None:
        """aiomqtt's TLS settings, or None for plain TCP. The files are checked here, so a wrong
        path says which key is wrong before the client tries (and retries) to connect."""
        if not self.tls.enabled:
            return None
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self.tls, key)
            if path is None:
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise ValueError(
                    f"dashboard.mqtt.tls.{key}: cannot read {path}: {exc.strerror or exc}"
                ) from None
        return aiomqtt.TLSParameters(
            ca_certs=str(self.tls.ca_file) if self.tls.ca_file else None,
            certfile=str(self.tls.cert_file) if self.tls.cert_file else None,
            keyfile=str(self.tls.key_file) if self.tls.key_file else None,
        )

    def rebased(self, base: Path) -> MqttSettings:
        """File paths of a config file taken relative to the file's directory ``base``."""

        def fix(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else base / p

        tls = self.tls.model_copy(
            update={k: fix(getattr(self.tls, k)) for k in ("ca_file", "cert_file", "key_file")}
        )
        return self.model_copy(update={"password_file": fix(self.password_file), "tls": tls})


class DashboardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bind: str = "127.0.0.1:8080"
    users_file: str | None = None
    state_dir: str = "dashboard-state"
    store: str | None = None
    #: Seconds without status or live data before a device counts as "monitoring inactive" (the
    #: gateway publishes status every 10 s, live at several Hz).
    stale_after_s: float = Field(25.0, gt=0)
    session_idle_min: float = Field(30.0, gt=0)
    session_max_h: float = Field(12.0, gt=0)
    #: Mark session cookies Secure even though the request arrived over plain HTTP (TLS ends at a
    #: reverse proxy in front of the dashboard).
    https_only: bool = False
    #: The site's IANA time zone: local hours, days and night (22-07) of the trends and report.
    timezone: str = "UTC"
    #: Sites shown when the store does not say (the gateway's series carry device and patient only).
    default_site: str | None = None
    #: Notice rules (``dashboard.analysis.notices.NoticeRules``): inactive_minutes,
    #: tonic_longer_than_s, spasms_per_hour_above; see docs/dashboard.md.
    notices: dict[str, float] = Field(default_factory=dict)
    #: How often the notice rules are evaluated on the store's rows (seconds).
    notice_eval_s: float = Field(15.0, gt=0)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"bind {v!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone {v!r}: not an IANA time zone (e.g. Europe/Zurich)") from exc
        return v

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])

    @property
    def loopback(self) -> bool:
        """True when only this machine can connect: then a login is optional."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def _errors(exc: ValidationError, source: str) -> str:
    """The first problem, as ``file: dashboard.dotted.key: message`` (one line for the CLI)."""
    first: dict[str, Any] = dict(exc.errors()[0])
    first["loc"] = ("dashboard", *tuple(first["loc"]))
    return format_errors(source, [first])


def load_dashboard_config(path: str | None, overrides: dict[str, Any] | None = None) -> DashboardConfig:
    """Read ``[dashboard]`` from a TOML file (a gateway config may hold it too), apply overrides."""
    data: dict[str, Any] = {}
    source = "<flags>"
    if path:
        source = path
        try:
            doc = load_toml(path)
        except ConfigError as exc:
            raise DashboardConfigError(str(exc)) from None
        table = doc.get("dashboard", {})
        if not isinstance(table, dict):
            raise DashboardConfigError(f"{path}: dashboard: must be a table")
        data = dict(table)
        gateway = doc.get("gateway")
        if isinstance(gateway, dict):
            # A gateway's own config: its site, and its store (InfluxDB or the local SQLite).
            if gateway.get("site") and "default_site" not in data:
                data["default_site"] = gateway["site"]
            if "store" not in data and not (overrides or {}).get("store"):
                data["store"] = f"gateway:{path}"
            mqtt = doc.get("mqtt")
            if isinstance(mqtt, dict) and "mqtt" not in data:
                keys = ("host", "port", "topic_prefix", "username", "password", "password_file", "tls")
                data["mqtt"] = {k: mqtt[k] for k in keys if k in mqtt}
    try:
        file_cfg = DashboardConfig.model_validate(data)
    except ValidationError as exc:
        raise DashboardConfigError(_errors(exc, source)) from exc
    if path:
        # The file's MQTT paths are relative to the file, not to wherever the service started.
        data["mqtt"] = file_cfg.mqtt.rebased(Path(path).resolve().parent).model_dump()
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("mqtt."):
            data.setdefault("mqtt", {})[key[5:]] = value
        else:
            data[key] = value
    try:
        cfg = DashboardConfig.model_validate(data)
    except ValidationError as exc:
        raise DashboardConfigError(_errors(exc, source)) from exc
    tls = cfg.mqtt.tls
    given = [k for k in ("ca_file", "cert_file", "key_file") if getattr(tls, k) is not None]
    if given and not tls.enabled:
        # As the gateway: a certificate named but TLS off is most likely a forgotten `enabled`.
        log.warning(
            "%s: dashboard.mqtt.tls.%s is set but dashboard.mqtt.tls.enabled = false: "
            "the MQTT connection is NOT encrypted",
            source,
            given[0],
        )
    return cfg
