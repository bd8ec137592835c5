"""The gateway image (compose: tests/unit/test_compose.py; units: tests/unit/test_deploy_systemd.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_installs_the_package_and_drops_root() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install" in text and "\nUSER neurospasm" in text
    # Every package pyproject installs (the dashboard too: the compose stack runs it from this image).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted({p.rstrip("*") for p in include})
    assert "dashboard" in packages
    for pkg in packages:
        assert f"COPY {pkg} {pkg}" in text, (
            f"deploy/Dockerfile: COPY {pkg} {pkg} missing (pyproject installs it)"
        )


def test_image_uid_is_the_one_the_operator_gives_the_secrets_to() -> None:
    """Compose secrets from files keep the host's owner: the docs chown them to the image's fixed uid."""
    uid = re.search(r"useradd [^\n]*--uid (\d+)", (ROOT / "deploy" / "Dockerfile").read_text())
    assert uid, "deploy/Dockerfile: give the service user a fixed --uid"
    assert f"sudo chown {uid.group(1)} " in (ROOT / "docs" / "operations.md").read_text()
