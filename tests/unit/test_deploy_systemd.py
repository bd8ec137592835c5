"""The systemd units in deploy/systemd: systemd's own verifier and security audit, and the promises
docs/operations.md makes about them (restart for ever, watchdog, own user, wait for the real time).

systemd-analyze is in Debian's ``systemd`` package, which scripts/test installs; it checks that the
units parse (a misspelt key is only a warning to systemd, so any output fails the test) and that the
command they run exists, so the test points ExecStart at this checkout's console script.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.servers import ServerBinaryMissing, find_binary

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_BIN = "/opt/neurospasm/venv/bin/neurospasm"
GATEWAY = "neurospasm-gateway.service"
DASHBOARD = "neurospasm-dashboard.service"


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (systemd keys may repeat; configparser alone keeps the last)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = out.setdefault(m.group(1), {})
            continue
        assert section is not None and "=" in line, f"{path}: {raw!r} outside a section or without '='"
        key, value = line.split("=", 1)
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key} missing"
    return values[-1]


def words(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> set[str]:
    return {w for v in unit[section].get(key, []) for w in v.split()}


@pytest.mark.parametrize("name", [GATEWAY, DASHBOARD])
def test_units_restart_for_ever_as_their_own_user_hardened_after_time_sync(name: str) -> None:
    unit = read_unit(UNITS / name)
    assert one(unit, "Service", "Restart") == "always"
    assert one(unit, "Unit", "StartLimitIntervalSec") == "0", "a burst of failures must not stop it for good"
    assert one(unit, "Service", "DynamicUser") == "yes" or one(unit, "Service", "User") not in ("", "root")
    assert one(unit, "Service", "StateDirectory").startswith("neurospasm")
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert one(unit, "Service", key) == value, f"{name}: {key}"
    assert {"time-sync.target"} <= words(unit, "Unit", "After") & words(unit, "Unit", "Wants")
    assert "neurospasm " in one(unit, "Service", "ExecStart")
    assert one(unit, "Service", "ExecStart").startswith(INSTALLED_BIN)
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    # No secret in the unit: credentials come from files through LoadCredential.
    for key in unit["Service"]:
        assert key != "Environment" or not re.search(r"(?i)pass|token|secret", " ".join(unit["Service"][key]))


def test_gateway_is_watched_by_the_service_manager() -> None:
    unit = read_unit(UNITS / GATEWAY)
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    watchdog = one(unit, "Service", "WatchdogSec")
    assert re.fullmatch(r"\d+s", watchdog) and 10 <= int(watchdog[:-1]) <= 120
    assert "run --config /etc/neurospasm/gateway.toml" in one(unit, "Service", "ExecStart")
    # The serial ports, and nothing else of /dev.
    assert one(unit, "Service", "DevicePolicy") == "closed"
    assert set(unit["Service"]["DeviceAllow"]) == {"char-ttyACM rw", "char-ttyUSB rw"}
    assert "dialout" in words(unit, "Service", "SupplementaryGroups")
    assert "AF_BLUETOOTH" in words(unit, "Service", "RestrictAddressFamilies")
    # Secrets come as credentials from a root-only directory (each file optional: only those used).
    assert unit["Service"]["LoadCredential"] == ["gateway:/etc/neurospasm/credentials/gateway"]
    dropin = UNITS / "systemd-time-wait-sync.service.d" / "neurospasm.conf"
    assert re.fullmatch(r"\d+s", one(read_unit(dropin), "Service", "TimeoutStartSec"))


def test_gateway_example_config_fits_the_unit() -> None:
    """The unit's credentials are where the documented config looks for them."""
    text = (ROOT / "deploy" / "gateway.example.toml").read_text()
    for name in ("mqtt-password", "influx-token"):
        assert f"/run/credentials/{GATEWAY}/gateway_{name}" in text, f"deploy/gateway.example.toml: {name}"


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    try:
        return find_binary("systemd-analyze", "systemd")
    except ServerBinaryMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def _installable_copy(tmp_path: Path, name: str) -> Path:
    """The unit with ExecStart pointing at this checkout's console script (verify checks it exists)."""
    here = shutil.which("neurospasm", path=str(Path(sys.executable).parent))
    assert here, f"no neurospasm console script beside {sys.executable}: pip install -e ."
    out = tmp_path / name
    out.write_text((UNITS / name).read_text().replace(INSTALLED_BIN, here))
    return out


def test_systemd_accepts_the_units(tmp_path: Path, systemd_analyze: str) -> None:
    units = [_installable_copy(tmp_path, n) for n in (GATEWAY, DASHBOARD)]
    res = subprocess.run(
        [systemd_analyze, "verify", *map(str, units)], capture_output=True, text=True, check=False
    )
    # Unknown keys, bad values and missing executables are only warnings: any line about our units fails.
    ours = [line for line in (res.stdout + res.stderr).splitlines() if "neurospasm" in line]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr


def test_systemd_rejects_a_broken_unit(tmp_path: Path, systemd_analyze: str) -> None:
    """The check above can fail: a misspelt key is reported."""
    bad = _installable_copy(tmp_path, GATEWAY)
    bad.write_text(bad.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    res = subprocess.run([systemd_analyze, "verify", str(bad)], capture_output=True, text=True, check=False)
    assert "WatchdogSecs" in res.stdout + res.stderr


@pytest.mark.parametrize("name", [GATEWAY, DASHBOARD])
def test_systemd_security_audit_rates_the_units_ok(tmp_path: Path, systemd_analyze: str, name: str) -> None:
    unit = _installable_copy(tmp_path, name)
    res = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert m, res.stdout[-2000:] + res.stderr
    # 0 is a fully sandboxed unit, 10 an unprotected one; "OK" is below 3 in systemd's scale.
    assert float(m.group(1)) < 3.0, res.stdout[-3000:]
