"""Workstream spec validation: every bad spec is refused with a clear error before
anything runs (no server needed), and the CLI prints it as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

import starter
from cli.workstream import DEFAULT_ROUTER_CONFIG, load_input
from models.graph import find_cycle
from models.workstream import RouterConfig, WorkstreamInput, WorkstreamSpec
from settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workstream" / "spec.yaml"


def spec(*steps: dict) -> dict:
    return {"work_item": "w", "steps": list(steps)}


def error_of(data: dict) -> str:
    with pytest.raises(ValidationError) as info:
        WorkstreamSpec.model_validate(data)
    return str(info.value)


def test_duplicate_step_id_is_refused():
    msg = error_of(spec({"id": "a", "kind": "shell"}, {"id": "a", "kind": "shell"}))
    assert "duplicate step id 'a'" in msg


def test_unknown_dependency_is_refused():
    msg = error_of(spec({"id": "a", "kind": "shell", "depends_on": ["ghost"]}))
    assert "step 'a' depends on unknown step 'ghost'" in msg


def test_cycle_is_refused_and_named():
    msg = error_of(spec({"id": "a", "kind": "shell", "depends_on": ["c"]},
                        {"id": "b", "kind": "shell", "depends_on": ["a"]},
                        {"id": "c", "kind": "shell", "depends_on": ["b"]},
                        {"id": "d", "kind": "shell"}))
    assert "dependency cycle: a -> c -> b -> a" in msg


def test_find_cycle_on_acyclic_and_self_loop():
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_unknown_task_kind_is_refused():
    router = RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG)
    with pytest.raises(ValidationError) as info:
        WorkstreamInput(spec=WorkstreamSpec.model_validate(spec({"id": "a", "kind": "deploy"})),
                        router=router)
    assert "step 'a' has unknown task kind 'deploy'" in str(info.value)
    assert "shell" in str(info.value)


def test_route_to_undefined_tool_is_refused():
    with pytest.raises(ValidationError, match="unknown tool"):
        RouterConfig.model_validate({"tools": {"sh": {"adapter": "shell"}},
                                     "routes": {"x": {"tools": ["sh", "nope"]}}})


def test_example_spec_is_valid():
    inp = load_input(EXAMPLE, Settings())
    assert [s.id for s in inp.spec.steps][:2] == ["checkout", "compile"]
    assert inp.router.routes["test"].strategy.value == "auto"


def test_cli_prints_one_line_for_a_cycle(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec({"id": "a", "kind": "shell", "depends_on": ["b"]},
                                        {"id": "b", "kind": "shell", "depends_on": ["a"]})))
    assert starter.main(["workstream", "start", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"error: {path}: dependency cycle: a -> b -> a" in err


def test_cli_names_the_unknown_kind(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec({"id": "a", "kind": "deploy"})))
    assert starter.main(["workstream", "start", str(path)]) == 1
    assert "unknown task kind 'deploy'" in capsys.readouterr().err


@pytest.mark.parametrize(("output", "summary"), [
    ("..F   [100%]\n==== FAILURES ====\nE assert 1 == 2\n"
     "========== 1 failed, 2 passed in 0.12s ==========\n", "1 failed, 2 passed in 0.12s"),
    ("3 passed, 1 warning in 1.05s\n", "3 passed, 1 warning in 1.05s"),
    ("======= 1 failed, 4 passed, 2 skipped in 3.20s (0:00:03) =======",
     "1 failed, 4 passed, 2 skipped in 3.20s (0:00:03)"),
    ("Ran 4 tests in 0.001s\n\nFAILED (failures=1, errors=1)\n", "FAILED (failures=1, errors=1)"),
    ("test result: FAILED. 3 passed; 1 failed; 0 ignored\n",
     "test result: FAILED. 3 passed; 1 failed; 0 ignored"),
    ("make: *** [all] Error 2\n", ""),
])
def test_failure_excerpt_finds_the_test_runners_summary(output, summary):
    from activities.workstream import failure_excerpt

    found, tail = failure_excerpt(output, "warning on stderr\n")
    assert found == summary
    assert tail.endswith("warning on stderr") and output.strip().splitlines()[-1] in tail


def test_failure_excerpt_keeps_the_last_lines():
    from activities.workstream import failure_excerpt

    _, tail = failure_excerpt("\n".join(f"line {i}" for i in range(100)), "")
    assert tail.splitlines() == [f"line {i}" for i in range(80, 100)]


def test_inline_routes_route_among_the_workers_tools_and_inline_tools_need_trust(tmp_path):
    from models.workstream import ToolAuthority

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "work_item": "inline", "routes": {"test": {"strategy": "fixed", "tools": ["shell"]}},
        "steps": [{"id": "t", "kind": "test", "inputs": {"script": "true"}},
                  {"id": "s", "kind": "shell", "inputs": {"script": "true"}}]}))
    inp = load_input(spec, Settings(_env_file=None))  # no router file anywhere
    assert inp.router.routes["test"].tools == ["shell"] and "shell" in inp.router.routes
    worker = ToolAuthority(router=RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG))
    assert worker.problems(inp) == []

    spec.write_text(yaml.safe_dump({
        "work_item": "inline", "tools": {"mine": {"adapter": "shell", "breaker": None}},
        "routes": {"test": {"tools": ["mine"]}, "shell": {"tools": ["mine"]}},
        "steps": [{"id": "t", "kind": "test", "inputs": {"script": "true"}}]}))
    inp = load_input(spec, Settings(_env_file=None))
    problems = "\n".join(worker.problems(inp))
    assert "tool 'mine' is not defined by this worker's router config" in problems
    assert "route 'test' is not defined by this worker's router config and names tool(s) " \
           "it does not define: mine" in problems
    assert "route 'shell' differs from this worker's definition" in problems
    assert worker.model_copy(update={"trust_spec_tools": True}).problems(inp) == []


def test_inline_route_to_an_undefined_tool_is_one_line(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"work_item": "w", "routes": {"test": {"tools": ["nope"]}},
                                    "steps": [{"id": "t", "kind": "test"}]}))
    from cli.common import CliError

    with pytest.raises(CliError) as err:
        load_input(spec, Settings(_env_file=None))
    assert "route 'test' names unknown tool(s) nope" in str(err.value)
    assert str(spec) in str(err.value)
