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
    host = "127.0.0.1"
    port = 1883
    topic_prefix = "neurospasm/v1"
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["DashboardConfig", "DashboardConfigError", "MqttSettings", "load_dashboard_config"]


class DashboardConfigError(Exception):
    """One line naming the file and key at fault."""


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "neurospasm/v1"
    username: str | None = None
    password_file: str | None = None

    def password(self) -> str | None:
        return Path(self.password_file).read_text().strip() if self.password_file else None


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
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "dashboard"
    return f"{source}: dashboard.{key}: {first['msg']}"


def load_dashboard_config(path: str | None, overrides: dict[str, Any] | None = None) -> DashboardConfig:
    """Read ``[dashboard]`` from a TOML file (a gateway config may hold it too), apply overrides."""
    data: dict[str, Any] = {}
    source = "<flags>"
    if path:
        source = path
        try:
            doc = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise DashboardConfigError(f"{path}: no such file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise DashboardConfigError(f"{path}: not valid TOML ({exc})") from exc
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
                keys = ("host", "port", "topic_prefix", "username", "password_file")
                data["mqtt"] = {k: mqtt[k] for k in keys if k in mqtt}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("mqtt."):
            data.setdefault("mqtt", {})[key[5:]] = value
        else:
            data[key] = value
    try:
        return DashboardConfig.model_validate(data)
    except ValidationError as exc:
        raise DashboardConfigError(_errors(exc, source)) from exc
