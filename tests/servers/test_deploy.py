"""Deployment files are validated here (no Docker engine on the dev boxes or CI to run them)."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

from ingest.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_consistent() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mosquitto", "influxdb", "gateway"} <= set(services)
    for name, svc in services.items():
        if "image" in svc:
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: pin the image tag"
        assert svc.get("restart") == "unless-stopped", f"{name}: must come back after a reboot"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name}: mounts {src}, which is not in the repository"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: {port} would expose patient data beyond loopback"
        env = svc.get("environment", {}) or {}
        for key in env:
            assert not any(word in key for word in ("PASSWORD", "TOKEN", "SECRET")), f"{name}: {key} inline"
    gw = services["gateway"]
    assert (ROOT / gw["build"]["dockerfile"]).exists()
    assert set(gw["depends_on"]) == {"mosquitto", "influxdb"}
    assert set(compose["volumes"]) >= {"gateway-state"}


def test_compose_gateway_config_is_valid() -> None:
    cfg = load_config(ROOT / "deploy" / "gateway.compose.toml")
    assert cfg.influx.enabled and cfg.influx.token_file is not None and cfg.influx.token is None
    assert cfg.mqtt.host == "mosquitto"


def test_systemd_unit_runs_the_gateway_hardened() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "systemd" / "neurospasm-gateway.service")
    svc = unit["Service"]
    assert "neurospasm run --config" in svc["ExecStart"]
    assert svc["Restart"] == "always"
    assert svc["NoNewPrivileges"] == "true" and svc["ProtectSystem"] == "strict"
    assert svc["User"] != "root"


def test_dockerfile_installs_the_package_and_drops_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install" in text and "\nUSER neurospasm" in text
    for pkg in ("ingest", "detectors", "firmware_sim"):
        assert f"COPY {pkg} {pkg}" in text
