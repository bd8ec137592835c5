"""Arrows one way: every module's imports (read with ast, function-level ones included) obey the rooms.

    detectors/          pure DSP: imports nothing of ours
    firmware_sim/       the device side: of ours, only the wire protocol (ingest.wire) and the one
                        configuration kit (detectors.configfile: ConfigError, the TOML reader)
    ingest/wire/        protocols and decoders: only ingest.wire
    ingest/sources/     transports: only ingest.sources and ingest.wire
    ingest/stream/      the stream core (session, pipeline, records, clock) imports no outputs, files
                        or sources at module level: it is I/O-free and shared by every command
    ingest/outputs/     encoders, router, spool, sinks: never sources, files or commands
    ingest/ (all but commands/)  never firmware_sim, never ingest.commands
    ingest/commands/    the command line: the one place that composes ingest and firmware_sim

A failure names the module, the line and the import against the rule.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("detectors", "firmware_sim", "ingest", "dashboard")
#: The one configuration error type and settings reader: every room may import it.
CONFIG_KIT = {"detectors.config", "detectors.configfile"}
STREAM_CORE = {
    "ingest.stream.session",
    "ingest.stream.pipeline",
    "ingest.stream.records",
    "ingest.stream.clock",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int
    top_level: bool  # at module level (not inside a function or under TYPE_CHECKING)

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[Import]:
    name = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_top = top
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                child_top = False
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                child_top = False  # annotations only, never executed
            if isinstance(child, ast.Import):
                out.extend(Import(name, a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                out.append(Import(name, target, child.lineno, top))
            visit(child, child_top)

    visit(tree, True)
    return [i for i in out if i.target.split(".")[0] in OURS]


@functools.cache
def _all_imports() -> list[Import]:
    """Every import of ours in the three packages: parsed on first use, not at collection (every
    xdist worker collects this module; only the one that runs these tests needs the parse)."""
    found: list[Import] = []
    for top in ("detectors", "firmware_sim", "ingest"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found.extend(_imports(path))
    return found


def _in(name: str, room: str) -> bool:
    return name == room or name.startswith(room + ".")


def _violations(rule: str) -> list[str]:
    bad: list[Import] = []
    for i in _all_imports():
        m, t = i.module, i.target
        if rule == "detectors are pure" and _in(m, "detectors") and not _in(t, "detectors"):
            bad.append(i)
        elif (
            rule == "firmware_sim imports only the wire protocol"
            and _in(m, "firmware_sim")
            and not (_in(t, "firmware_sim") or _in(t, "ingest.wire") or t in CONFIG_KIT)
        ):
            bad.append(i)
        elif rule == "wire imports only wire" and _in(m, "ingest.wire") and not _in(t, "ingest.wire"):
            bad.append(i)
        elif (
            rule == "sources import only sources and wire"
            and _in(m, "ingest.sources")
            and not (_in(t, "ingest.sources") or _in(t, "ingest.wire"))
        ):
            bad.append(i)
        elif (
            rule == "the stream core is I/O-free"
            and m in STREAM_CORE
            and i.top_level
            and any(
                _in(t, r) for r in ("ingest.outputs", "ingest.files", "ingest.sources", "ingest.commands")
            )
        ):
            bad.append(i)
        elif (
            rule == "outputs never import sources, files or commands"
            and _in(m, "ingest.outputs")
            and any(_in(t, r) for r in ("ingest.sources", "ingest.files", "ingest.commands"))
        ):
            bad.append(i)
        elif (
            rule == "ingest outside commands never imports firmware_sim"
            and _in(m, "ingest")
            and not _in(m, "ingest.commands")
            and _in(t, "firmware_sim")
        ):
            bad.append(i)
        elif (
            rule == "only the command line imports the commands"
            and not _in(m, "ingest.commands")
            and m != "ingest.__main__"  # ``python -m ingest`` is the command line
            and _in(t, "ingest.commands")
        ):
            bad.append(i)
    return [str(i) for i in bad]


RULES = [
    "detectors are pure",
    "firmware_sim imports only the wire protocol",
    "wire imports only wire",
    "sources import only sources and wire",
    "the stream core is I/O-free",
    "outputs never import sources, files or commands",
    "ingest outside commands never imports firmware_sim",
    "only the command line imports the commands",
]


@pytest.mark.parametrize("rule", RULES)
def test_imports_follow_the_arrows(rule: str) -> None:
    assert _violations(rule) == [], rule


def test_the_checker_sees_imports_of_every_kind() -> None:
    """The checker itself can fail: it finds function-level, relative and TYPE_CHECKING imports."""
    by_module = {(i.module, i.target, i.top_level) for i in _all_imports()}
    # function-level: the command line composes firmware_sim inside handlers
    assert ("ingest.commands.record", "firmware_sim.scenario", False) in by_module
    # module-level from-import
    assert ("ingest.stream.pipeline", "ingest.wire.kinds", True) in by_module
    # TYPE_CHECKING blocks count as not executed
    assert ("ingest.stream.pipeline", "ingest.stream.session", False) in by_module
    assert len(_all_imports()) > 100


def test_the_config_kit_imports_nothing_but_the_error_type() -> None:
    """What firmware_sim may import for its scenarios stays small: no pydantic, nothing of ingest."""
    kit = [i for i in _all_imports() if i.module == "detectors.configfile"]
    assert [i.target for i in kit] == ["detectors.config"]
    tree = ast.parse((ROOT / "detectors" / "configfile.py").read_text(encoding="utf-8"))
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "pydantic" not in mods and "detectors.config" in mods
    # firmware_sim's scenarios use it (one reader, one error type), nothing else of detectors
    sim = {i.target for i in _all_imports() if _in(i.module, "firmware_sim") and _in(i.target, "detectors")}
    assert sim == {"detectors.configfile"}


def test_architecture_doc_names_only_modules_that_exist() -> None:
    import re

    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:ingest|detectors|firmware_sim|tests|bench)/[\w/]*\.py)\b", doc))
    assert len(named) >= 15, named  # the doc draws the flow with real module names
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == [], f"docs/architecture.md names modules that do not exist: {missing}"
    for room in (
        "ingest/wire/",
        "ingest/sources/",
        "ingest/stream/",
        "ingest/outputs/",
        "ingest/files/",
        "ingest/commands/",
    ):
        assert room in doc and (ROOT / room).is_dir(), room
