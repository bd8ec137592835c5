"""docker-compose.yml and .env.example: consistent, complete and secure by default.

No Docker engine runs on the dev boxes or in CI, so the file is checked for what would break or expose
a clinic: every file it mounts exists (or is made by the deploy scripts, which the test runs as
docs/operations.md says), every variable it uses is in .env.example and every secret there is empty,
nothing but the broker's TLS listeners is published beyond loopback, and the configurations of the
services it runs point at the ports, files and secrets the compose file gives them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.config import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = {"mosquitto", "influxdb", "grafana", "gateway", "dashboard"}
#: container ports that may face the network: the broker's TLS listeners (deploy/mosquitto/mosquitto.conf)
PUBLIC_OK = {8883, 8884}
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "KEY")
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s]*", line), f".env.example:{n}: not NAME=value: {line!r}"
        key, value = line.split("=", 1)
        assert key not in out, f".env.example:{n}: {key} twice"
        out[key] = value
    return out


def interpolate(text: str, env: dict[str, str]) -> str:
    """What docker compose makes of the file with .env.example as .env (``$$`` is a literal ``$``)."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name, "")
        if op in (":-", "-") and not value:
            return arg or ""
        return value

    return VAR.sub(sub, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(interpolate(COMPOSE.read_text(), env_example()))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's deploy/mosquitto with what the operator makes, by the documented steps."""
    root = tmp_path_factory.mktemp("clinic")
    shutil.copytree(ROOT / "deploy", root / "deploy")
    scripts = root / "deploy" / "scripts"
    for argv in (
        [
            scripts / "mqtt-certs",
            root / "deploy/mosquitto/certs",
            "--server",
            "mqtt.example,mosquitto",
        ],
        [scripts / "add-site", "home-0001"],
    ):
        res = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
        assert res.returncode == 0, f"{argv}: {res.stderr}"
    return root


def test_every_variable_is_in_env_example_and_no_secret_is_filled_in() -> None:
    env = env_example()
    used = {m.group(1): m for m in VAR.finditer(COMPOSE.read_text())}
    for name, m in used.items():
        assert name in env, f"docker-compose.yml uses ${{{name}}}, which .env.example does not list"
        if any(w in name for w in SECRET_WORDS):
            assert m.group(2) != ":-" or not m.group(3), f"{name}: a secret must not have a default"
    secret_refs = {
        s["environment"]
        for s in yaml.safe_load(COMPOSE.read_text())["secrets"].values()
        if "environment" in s
    }
    assert secret_refs <= set(env), f"secrets from variables not in .env.example: {secret_refs - set(env)}"
    stale = set(env) - set(used) - secret_refs
    assert not stale, f".env.example lists variables docker-compose.yml never uses: {sorted(stale)}"
    for key, value in env.items():
        if any(w in key for w in SECRET_WORDS):
            assert value == "", f".env.example: {key} must be empty (a default secret is a shared secret)"


def test_services_are_pinned_restart_and_keep_secrets_out_of_the_file(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    raw = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, svc in services.items():
        if "image" in svc:
            image = svc["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        else:
            assert (ROOT / svc["build"]["dockerfile"]).exists(), name
        assert svc.get("restart") == "unless-stopped", f"{name}: must come back after a reboot"
        assert "healthcheck" in svc or name in ("gateway", "dashboard"), f"{name}: no healthcheck"
        for key, value in (raw[name].get("environment") or {}).items():
            if any(w in key for w in SECRET_WORDS) and not key.endswith("__FILE"):
                assert isinstance(value, str) and VAR.fullmatch(value.split("#")[0].strip()), (
                    f"{name}: {key} must come from .env (${{...}}), not be written in docker-compose.yml"
                )
    for name in ("gateway", "dashboard"):
        deps = services[name]["depends_on"]
        assert deps["mosquitto"]["condition"] == "service_healthy", name
    assert services["grafana"]["depends_on"]["influxdb"]["condition"] == "service_healthy"


def _published(svc: dict[str, Any]) -> list[tuple[str, int, int]]:
    out = []
    for spec in svc.get("ports", []):
        assert isinstance(spec, str), f"long port syntax not expected: {spec}"
        parts = spec.split(":")
        assert len(parts) == 3, f"{spec}: always name the host address (HOST:PORT:PORT)"
        out.append((parts[0], int(parts[1]), int(parts[2].split("/")[0])))
    return out


def test_only_the_brokers_tls_listeners_face_the_network(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for host, _hport, cport in _published(svc):
            if host != "127.0.0.1":
                assert name == "mosquitto" and cport in PUBLIC_OK, (
                    f"{name}: {host}:{cport} would expose plain MQTT, a database or a web UI beyond loopback"
                )
    mq = _published(compose["services"]["mosquitto"])
    assert {c for _, _, c in mq} == PUBLIC_OK, "publish 8883 and 8884, and never 1883"
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    listeners = dict(re.findall(r"^listener (\d+)(?: (\S+))?$", conf, re.M))
    assert listeners == {"1883": "127.0.0.1", "8883": "", "8884": ""}
    blocks = re.split(r"^listener ", conf, flags=re.M)[1:]
    for block in blocks:
        port = block.split()[0]
        if port in ("8883", "8884"):
            assert "allow_anonymous false" in block and "certfile " in block and "acl_file " in block, port
    # The health check talks to the loopback listener, the only one without TLS.
    assert "1883" in compose["services"]["mosquitto"]["healthcheck"]["test"]


def test_every_mounted_file_exists_or_is_made_by_the_scripts(
    compose: dict[str, Any], generated: Path
) -> None:
    def check(name: str, src: str) -> None:
        rel = src[2:] if src.startswith("./") else src
        if (ROOT / rel).exists():
            return
        assert (generated / rel).exists(), f"{name}: {src} is not in the repository nor made by the scripts"
        assert rel.startswith("deploy/mosquitto/"), f"{name}: {src}: generated files go in deploy/mosquitto"
        ignored = subprocess.run(["git", "check-ignore", "-q", rel], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{src} holds clinic secrets or certificates: it must be git-ignored"

    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                check(name, src)
            else:
                assert src in compose["volumes"], f"{name}: named volume {src} not declared"
        for secret in svc.get("secrets", []):
            assert secret in compose["secrets"], f"{name}: secret {secret} not declared"
    for name, s in compose["secrets"].items():
        if "file" in s:
            check(f"secret {name}", s["file"])
    # The files mosquitto.conf names are made too (under the container's /mosquitto/config).
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    for path in set(re.findall(r"^(?:cafile|certfile|keyfile|password_file|acl_file) (\S+)$", conf, re.M)):
        assert path.startswith("/mosquitto/config/"), path
        check("mosquitto", "./deploy/mosquitto/" + path.removeprefix("/mosquitto/config/"))


def test_grafana_gets_its_provisioning_and_the_variables_it_expands(compose: dict[str, Any]) -> None:
    g = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in g["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/neurospasm.yaml").read_text())
    assert mounts[provider["providers"][0]["options"]["path"]] == "./deploy/grafana/dashboards"
    ds_text = (ROOT / "deploy/grafana/provisioning/datasources/influxdb.yaml").read_text()
    needed = set(re.findall(r"\$\{([A-Z_]+)\}", ds_text))
    assert needed and needed <= set(g["environment"]), f"Grafana lacks {needed - set(g['environment'])}"
    assert g["environment"]["INFLUX_URL"] == "http://influxdb:8086"
    assert g["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert g["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"


def _container_files(svc: dict[str, Any]) -> set[str]:
    files = {v.split(":")[1] for v in svc.get("volumes", [])}
    files |= {f"/run/secrets/{s}" for s in svc.get("secrets", [])}
    return files


def test_the_gateway_config_matches_the_broker_the_database_and_its_mounts(compose: dict[str, Any]) -> None:
    gw = compose["services"]["gateway"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in gw["volumes"]}
    cfg_src = mounts["/etc/neurospasm/gateway.toml"]
    cfg = load_config(ROOT / cfg_src)
    assert cfg.mqtt.host == "mosquitto" and cfg.mqtt.port == 8883 and cfg.mqtt.tls.enabled
    assert cfg.mqtt.username == f"gw-{cfg.gateway.site}", "the ACL knows the gateway as gw-SITE"
    files = _container_files(gw)
    for path in (cfg.mqtt.password_file, cfg.mqtt.tls.ca_file, cfg.mqtt.tls.cert_file, cfg.mqtt.tls.key_file,
                 cfg.influx.token_file):  # fmt: skip
        assert path is not None and str(path) in files, f"{cfg_src}: {path} is not given to the container"
    # The client certificate mounted is the one made for this site's gateway, the key its own.
    assert mounts[str(cfg.mqtt.tls.cert_file)].endswith(f"/gw-{cfg.gateway.site}.crt")
    secrets = compose["secrets"]
    assert secrets["mqtt_gateway_key"]["file"].endswith(f"/gw-{cfg.gateway.site}.key")
    assert secrets["mqtt_gateway_password"]["file"].endswith(f"/secrets/gw-{cfg.gateway.site}")
    assert cfg.influx.enabled and cfg.influx.url == "http://influxdb:8086" and cfg.influx.token is None
    env = compose["services"]["influxdb"]["environment"]
    assert (
        cfg.influx.org == env["DOCKER_INFLUXDB_INIT_ORG"]
        and cfg.influx.bucket == env["DOCKER_INFLUXDB_INIT_BUCKET"]
    )
    assert secrets["influx_gateway_token"]["environment"] == "INFLUX_GATEWAY_TOKEN"
    # The default gateway runs the simulator and points at its pty link.
    assert gw["command"][:2] == ["/bin/sh", "/opt/neurospasm/gateway-sim"]
    assert mounts["/opt/neurospasm/gateway-sim"] == "./deploy/scripts/gateway-sim"
    assert (
        cfg.devices[0].port == "/tmp/wearable"
        and "/tmp/wearable" in (ROOT / "deploy/scripts/gateway-sim").read_text()
    )


def test_the_dashboard_reads_as_its_read_only_accounts(compose: dict[str, Any]) -> None:
    import tomllib

    dash = compose["services"]["dashboard"]
    assert dash["command"][:2] == ["neurospasm", "dashboard"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in dash["volumes"]}
    cfg = tomllib.loads((ROOT / mounts[dash["command"][-1]]).read_text())["dashboard"]
    site = cfg["default_site"]
    assert cfg["mqtt"]["username"] == f"dash-{site}" and cfg["mqtt"]["port"] == 8883
    assert cfg["mqtt"]["host"] == "mosquitto"
    assert cfg["mqtt"]["password_file"] in _container_files(dash)
    assert compose["secrets"]["mqtt_dashboard_password"]["file"].endswith(f"/secrets/dash-{site}")
    # Its client certificate and key are there for the TLS listener.
    assert f"/etc/neurospasm/certs/dash-{site}.crt" in mounts and "mqtt_dashboard_key" in dash["secrets"]
    # ... and the dashboard's config uses them: TLS on, the mounted CA, certificate and key.
    tls = cfg["mqtt"]["tls"]
    assert tls["enabled"] is True
    assert mounts[tls["ca_file"]].endswith("/certs/ca.crt")
    assert mounts[tls["cert_file"]].endswith(f"/certs/clients/dash-{site}.crt")
    assert tls["key_file"] == "/run/secrets/mqtt_dashboard_key" and tls["key_file"] in _container_files(dash)
    assert compose["secrets"]["mqtt_dashboard_key"]["file"].endswith(f"/certs/clients/dash-{site}.key")
    # Read-only everywhere: the read token (as Grafana's), never the gateway's write or the admin token.
    raw_env = yaml.safe_load(COMPOSE.read_text())["services"]["dashboard"]["environment"]
    assert raw_env["NEUROSPASM_INFLUX_TOKEN"].startswith("${INFLUX_GRAFANA_TOKEN")
    assert (
        cfg["store"]
        == f"influx:http://influxdb:8086/{compose['services']['influxdb']['environment']['DOCKER_INFLUXDB_INIT_BUCKET']}"
    )
    assert cfg["state_dir"] in mounts and mounts[cfg["state_dir"]] in compose["volumes"]
    port = int(cfg["bind"].rpartition(":")[2])
    assert [(h, c) for h, _, c in _published(dash)] == [("127.0.0.1", port)]
