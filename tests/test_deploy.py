"""The gateway image (compose: tests/test_compose.py; units: tests/test_deploy_systemd.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_installs_the_package_and_drops_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install" in text and "\nUSER neurospasm" in text
    for pkg in ("ingest", "detectors", "firmware_sim"):
        assert f"COPY {pkg} {pkg}" in text
