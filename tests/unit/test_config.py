"""Configuration: the example documents every key and loads; errors are one line naming file and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from ingest.commands.cli import main
from ingest.config import ConfigError, GatewayConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "gateway.example.toml"


def test_example_config_loads_and_documents_every_key() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.devices[0].id == "wearable-1"
    text = EXAMPLE.read_text()
    # Every key of every section of the model appears in the example (set or commented out).
    sections = {
        "gateway": cfg.gateway,
        "mqtt": cfg.mqtt,
        "influx": cfg.influx,
        "local": cfg.local,
        "spool": cfg.spool,
        "mqtt.tls": cfg.mqtt.tls,
        "devices": cfg.devices[0],
    }
    for name, model in sections.items():
        for key in type(model).model_fields:
            pattern = (
                rf"^\[{name}\.{key}\]" if isinstance(getattr(model, key), BaseModel) else rf"^#? ?{key} ="
            )
            assert re.search(pattern, text, flags=re.M), f"{name}.{key} is not documented in the example"


def write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(body)
    return p


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[mqtt]\nport = "x"\n', r"gw\.toml: mqtt\.port: Input should be a valid integer"),
        ("[mqtt]\nprot = 1883\n", r"gw\.toml: mqtt\.prot: unknown key"),
        ('[[devices]]\nid = "a"\n', r"gw\.toml: devices\[0\]: a serial device needs 'port'"),
        ('[gateway]\npatient = "Jane Doe"\n', r"gw\.toml: gateway\.patient: String should match pattern"),
        ('[influx]\nurl = "localhost:8086"\n', r"gw\.toml: influx\.url: must be an http"),
        ('[mqtt]\ntopic_prefix = "a/#"\n', r"gw\.toml: mqtt\.topic_prefix: must be a plain topic path"),
        ('[[devices]]\nid="a"\nport="/x"\n[[devices]]\nid="a"\nport="/y"\n', r"device ids must be unique"),
        ("[mqtt\n", r"gw\.toml: not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(write(tmp_path, body))
    assert "\n" not in str(err.value).strip() or body.count("[") > 2


def test_missing_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "--config", str(tmp_path / "nope.toml")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == f"neurospasm: {tmp_path / 'nope.toml'}: cannot read config: No such file or directory"


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[gateway]\nstate_dir = "state"\n[spool]\ndirectory = "sp"\n'))
    assert cfg.gateway.state_dir == tmp_path / "state"
    assert cfg.spool_dir == tmp_path / "sp"
    assert cfg.local_dir == tmp_path / "state" / "series"


def test_ble_bridge_is_relative_to_the_file_and_selects_the_bridge_backend(tmp_path: Path) -> None:
    from ingest.sources.blebridge import BridgeBleakClient, BridgeBleakScanner
    from ingest.stream.runner import default_transport

    body = '[[devices]]\nid = "m"\nkind = "myo"\ntransport = "ble"\nname = "Myo"\nble_bridge = "s/myo.sock"\n'
    cfg = load_config(write(tmp_path, body))
    assert cfg.devices[0].ble_bridge == tmp_path / "s" / "myo.sock"
    t = default_transport(cfg.devices[0])
    assert t.backend is not None and issubclass(t.backend, BridgeBleakClient)  # type: ignore[attr-defined]
    assert t.scanner_backend is not None and issubclass(t.scanner_backend, BridgeBleakScanner)  # type: ignore[attr-defined]
    assert t.backend.socket_path == str(tmp_path / "s" / "myo.sock")  # type: ignore[attr-defined]
    plain = load_config(write(tmp_path, body.replace('ble_bridge = "s/myo.sock"\n', "")))
    assert default_transport(plain.devices[0]).backend is None  # type: ignore[attr-defined]  # BlueZ & co.


def test_defaults_are_complete() -> None:
    cfg = GatewayConfig()
    assert cfg.mqtt.topic_prefix == "neurospasm/v1"
    assert tomllib.loads(EXAMPLE.read_text())["mqtt"]["protocol"] in ("3.1.1", "5")
