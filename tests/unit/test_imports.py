"""The project's import graph: every module imports in a fresh interpreter, no
import cycles among project modules (imports inside functions included), and
the worker and the Temporal plumbing import nothing of the CLI."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from models.graph import find_cycle

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["activities", "bench", "cli", "models", "settings", "simulation", "temporal_plumbing",
            "tests", "workflows"]
TOP_MODULES = ["starter", "worker"]
# Scripts run by other programs, not importable on their own: Alembic's migration
# environment (needs Alembic's context) and the peers of the comparison benchmark
# (run in a virtualenv of their own with LangGraph and DBOS).
NOT_IMPORTABLE = {"activities.learning_migrations.env", "bench.peers.peer_langgraph",
                  "bench.peers.peer_dbos"}


def module_name(path: Path) -> str:
    """``cli/server.py`` -> ``cli.server``; ``settings/__init__.py`` -> ``settings``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    """Every project module by dotted name."""
    files = [ROOT / f"{m}.py" for m in TOP_MODULES]
    for package in PACKAGES:
        files += [p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts]
    return {module_name(p): p for p in files}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (module level or
    inside functions), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        found |= {t for t in targets if t in modules and t != name}
    return found


def import_graph() -> dict[str, list[str]]:
    """Project module -> the project modules it imports."""
    modules = project_modules()
    return {name: sorted(imports_of(name, path, set(modules)))
            for name, path in sorted(modules.items())}


def fresh_interpreter(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(set(project_modules()) - NOT_IMPORTABLE)
    code = f"""
import importlib, json, traceback
failed = {{}}
for name in {names!r}:
    try:
        importlib.import_module(name)
    except BaseException as err:  # noqa: BLE001
        failed[name] = "".join(traceback.format_exception_only(err)).strip()
print(json.dumps(failed))
"""
    proc = fresh_interpreter(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}


def test_there_are_no_import_cycles_among_project_modules():
    graph = import_graph()
    assert "cli.demo" in graph["starter"]  # the graph sees what it should
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("def f():\n    import b\n")
    b = tmp_path / "b.py"
    b.write_text("import a\n")
    graph = {"a": sorted(imports_of("a", a, {"a", "b"})),
             "b": sorted(imports_of("b", b, {"a", "b"}))}
    assert find_cycle(graph) == ["a", "b", "a"]


def installed_modules() -> list[str]:
    """The project modules ``pip install`` ships (pyproject's py-modules and packages)."""
    import fnmatch
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setup["py-modules"] + setup["packages"]["find"]["include"]
    return sorted(name for name in project_modules()
                  if any(fnmatch.fnmatch(name, p) for p in patterns))


def test_nothing_installed_imports_the_test_package():
    """The product (worker, CLI with its demos, everything pip installs) runs without
    tests/: what it shares with the tests lives in an installed package (the
    simulated student in simulation/). Benchmarks run from a source checkout and
    may use the test doubles (the fake GitHub, the fault harness)."""
    graph = import_graph()
    installed = installed_modules()
    assert {"starter", "cli.demo", "simulation.student"} <= set(installed)
    assert "simulation.student" in graph["cli.demo"]  # the graph sees what it should
    offenders = [f"{name} -> {target}" for name in installed for target in graph[name]
                 if target == "tests" or target.startswith("tests.")]
    assert not offenders, f"move what these share with the tests out of tests/: {offenders}"


def test_the_worker_and_the_plumbing_import_nothing_of_the_cli():
    proc = fresh_interpreter(
        "import sys, worker, temporal_plumbing.client, temporal_plumbing.environments, "
        "temporal_plumbing.workers, temporal_plumbing.search_attributes; "
        "print(sorted(m for m in sys.modules if m == 'cli' or m.startswith('cli.')))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_clients_environments_and_replayers_are_built_only_by_the_plumbing():
    """Every client, test server and replayer comes from temporal_plumbing, so each
    gets the same data converter (payload codec included), interceptors and runtime."""
    import re

    pattern = re.compile(r"Client\.connect\(|WorkflowEnvironment\.start_|Replayer\(|"
                         r"pydantic_data_converter")
    allowed = {"tests.unit.test_imports", "tests.unit.test_payload_codec"}
    offenders = [name for name, path in project_modules().items()
                 if not name.startswith("temporal_plumbing") and name not in allowed
                 and pattern.search(path.read_text())]
    assert not offenders, f"build these through temporal_plumbing: {offenders}"


def test_console_scripts_resolve_and_learn_is_orchestrator_learn():
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for target in scripts.values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target
    proc = fresh_interpreter("import sys; sys.argv = ['learn', '--help']; "
                             "import starter; starter.learn_entry()")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: orchestrator learn")
