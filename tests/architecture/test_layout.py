"""The folders draw the data path and imports point one way:
`daemon -> engine -> connect -> shared`, `sinks -> engine.events`, `daemon, sinks -> sqs -> shared`
(the SQS boundary sits beside `connect/`), `testing -> anything`;
nothing in production imports `testing/` (the CLI's `demo`, `emulator` and `dev` commands
import it inside themselves, nowhere else), and `bench/` never imports `tests/`."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"
SHARED = {
    "errors",
    "clock",
    "metrics",
    "retry",
    "batcher",
    "waiters",
    "bounds",
    "tracing",
    "logcontext",
}

#: What each layer may import from the package (beyond itself).
ALLOWED: dict[str, set[str]] = {
    "shared": {"shared"},
    "connect": {"shared", "connect"},
    "sqs": {"shared", "sqs"},
    "engine": {"shared", "connect", "engine"},
    "sinks": {"shared", "sinks", "engine.events", "sqs"},
    "daemon": {"shared", "connect", "sqs", "engine", "sinks", "daemon"},
    # The producer's client: the worker's event and request types, and the SQS boundary.
    "client": {"shared", "sqs", "engine.events", "engine.request", "engine.reply_to", "client"},
    "edge": {"shared", "connect", "sqs", "engine", "sinks", "daemon", "client", "edge"},
}


#: The command line: the edge, where settings are loaded and everything is put together.
EDGE = {"cli", "__main__"}
#: The CLI's commands that run the testing kit, and so may import it (inside themselves only).
TESTING_COMMANDS = {"_cmd_demo", "_cmd_emulator", "_emulator_options", "_cmd_dev"}


def _layer(module: str) -> str:
    """`orchestrator.engine.watch` -> `engine`; shared modules -> `shared`."""
    parts = module.split(".")
    if len(parts) < 2 or not (
        (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").exists()
    ):
        return "top"  # `orchestrator` itself, or a name it defines (`__version__`)
    if parts[1] in SHARED:
        return "shared"
    if parts[1] in EDGE:
        return "edge"
    return parts[1]


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, *, skip_functions: frozenset[str] = frozenset()) -> list[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions included), but
    those inside the top-level functions named in `skip_functions`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).rsplit(".", 1)[0]
    if path.name == "__init__.py":
        package = _module_name(path)
    found: list[str] = []
    skipped = {
        id(inner)
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in skip_functions
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{alias.name}" for alias in node.names]
    return found


def _allowed(source_layer: str, target: str) -> bool:
    target_layer = _layer(target)
    if target_layer == "top":  # `orchestrator` itself (the version string)
        return True
    allowed = ALLOWED[source_layer]
    if target_layer in allowed:
        return True
    dotted = [f"orchestrator.{rule}" for rule in allowed if "." in rule]
    return any(target == rule or target.startswith(rule + ".") for rule in dotted)


def _production_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if _layer(_module_name(p)) in ALLOWED]


@pytest.mark.parametrize("path", _production_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_production_imports_point_one_way(path: Path) -> None:
    layer = _layer(_module_name(path))
    # The CLI's testing-kit commands import the kit inside themselves: checked below.
    skip = frozenset(TESTING_COMMANDS) if layer == "edge" else frozenset()
    wrong = [
        target
        for target in _imports(path, skip_functions=skip)
        if target.startswith("orchestrator.") and not _allowed(layer, target)
    ]
    assert not wrong, f"{layer} module imports {sorted(set(wrong))}"


def test_the_cli_imports_the_testing_kit_only_inside_the_commands_that_run_it() -> None:
    cli = PACKAGE / "cli.py"
    tree = ast.parse(cli.read_text(encoding="utf-8"))
    commands = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert set(commands) >= TESTING_COMMANDS
    for name in TESTING_COMMANDS:
        imported = [
            node.module
            for node in ast.walk(commands[name])
            if isinstance(node, ast.ImportFrom) and node.module
        ]
        assert all(m.startswith("orchestrator.testing") for m in imported), (name, imported)
    # And the rest of the CLI never does (the check above, with these functions skipped).
    assert not any(
        t.startswith("orchestrator.testing")
        for t in _imports(cli, skip_functions=frozenset(TESTING_COMMANDS))
    )
    assert any(t.startswith("orchestrator.testing") for t in _imports(cli))


def test_every_production_module_belongs_to_a_layer() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.stem not in SHARED | EDGE | {"__init__"}]
    assert not loose, f"modules at the package root outside the shared set: {loose}"


def test_benchmarks_never_import_the_tests() -> None:
    offenders = {
        str(path.relative_to(ROOT)): target
        for path in sorted((ROOT / "bench").rglob("*.py"))
        for target in _imports(path)
        if target == "tests" or target.startswith("tests.")
    }
    assert not offenders, offenders


def test_the_rule_catches_an_upward_import() -> None:
    """The check itself: a connect module importing the engine is refused."""
    assert not _allowed("connect", "orchestrator.engine.request")
    assert not _allowed("daemon", "orchestrator.testing.emulator")
    assert not _allowed("sinks", "orchestrator.engine.lifecycle")
    assert not _allowed("engine", "orchestrator.sqs.source")  # the lifecycle knows no SQS
    assert not _allowed("sqs", "orchestrator.connect.gateway")  # nor SQS code Connect
    assert _allowed("sinks", "orchestrator.sqs")
    assert _allowed("sinks", "orchestrator.engine.events")
    assert _allowed("daemon", "orchestrator.connect.gateway")
    assert not _allowed("edge", "orchestrator.testing.demo")  # the CLI, at module level


#: What each base dependency (pyproject's [project] dependencies) is imported as, and what they
#: bring along that the code may import too (botocore comes with aiobotocore).
_IMPORT_NAMES = {
    "aiobotocore": {"aiobotocore", "botocore"},
    "aiohttp": {"aiohttp"},
    "anyio": {"anyio"},
    "structlog": {"structlog"},
    "tenacity": {"tenacity"},
    "pydantic": {"pydantic"},
    "pydantic-settings": {"pydantic_settings"},
    "prometheus-client": {"prometheus_client"},
    "redis": {"redis"},
}


#: The modules that implement an extra, and what they may import beyond the base dependencies
#: (loaded only when the extra is installed: tests/tracing/test_optional.py).
_EXTRAS = {"orchestrator/tracing/otel.py": {"opentelemetry"}}


def test_the_daemon_needs_only_its_base_dependencies() -> None:
    """`pip install contact-orchestrator` (no extras, as the container image does) must be enough
    for `orchestrator run`: production code imports only the base dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    assert names == set(_IMPORT_NAMES), "keep _IMPORT_NAMES in step with pyproject.toml"
    allowed = set().union(*_IMPORT_NAMES.values())
    stdlib = sys.stdlib_module_names
    production = _production_modules()
    needed = {
        str(path.relative_to(ROOT)): top
        for path in production
        for target in _imports(path)
        if (top := target.split(".")[0])
        not in stdlib
        | allowed
        | _EXTRAS.get(path.relative_to(ROOT).as_posix(), set())
        | {"orchestrator", "__future__", ""}
        and not top.startswith("types_")  # stubs, imported under TYPE_CHECKING only
    }
    assert not needed, f"production code imports packages outside the base dependencies: {needed}"


#: Test folders that mirror no source folder: what they test cuts across the package (or is not
#: Python: the deploy files, the docs), with the reason.
CROSS_CUTTING = {
    "architecture": "the layout itself",
    "bench": "the benchmark harness (bench/)",
    "deploy": "the deployment files (deploy/)",
    "docs": "the docs site and its examples (docs/)",
    "emulator": "the testing kit's Connect emulator, the kit's largest part",
    "examples": "the reference web backend (examples/web/) and its page, in a real browser",
    "fleet": "daemon/fleet/ (fleet mode's own suite)",
    "reliability": "poison bodies and memory through a whole worker",
    "security": "what a whole worker exposes, and to whom",
    "shared": "the shared modules at the package root (retry, batcher, waiters ...)",
    "support": "helpers of the tests, no tests",
}


def test_tests_mirror_the_source_folders() -> None:
    """`tests/<folder>/` tests `orchestrator/<folder>/`: a reader finds a module's tests in the
    folder of the same name (or in one of the cross-cutting folders above)."""
    source = {p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    tests = ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    stray = sorted(folders - source - set(CROSS_CUTTING))
    assert not stray, f"test folders that mirror no orchestrator/ folder: {stray}"
    kit = {p.name for p in (PACKAGE / "testing").iterdir() if p.is_dir() and any(p.glob("*.py"))}
    nested = {
        p.name for p in (tests / "testing").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert nested <= kit, f"tests/testing/ folders that mirror no kit folder: {nested - kit}"
