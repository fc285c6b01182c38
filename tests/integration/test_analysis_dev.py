"""An analysis from the CLI, on the dev server with the real worker (offline LLM
provider): real markdown sources from tests/fixtures/analysis become a cited report."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from settings import Settings
from tests.fault_harness import eventually
from tests.integration.test_cli import acli, assert_one_line_error
from worker import make_worker
from workflows.analysis import AnalysisWorkflow
from workflows.analysis_checks import inline_citations, split_frontmatter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "analysis"


@pytest.fixture
def env(dev_env, task_queue, tmp_path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("ANTHROPIC_API_KEY", "EXA_API_KEY", "LLM_PROVIDER")}
    return {**base, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": task_queue, "ORCHESTRATOR_HOME": str(tmp_path / "home")}


async def open_gate(client: Client, wf_id: str, env: dict[str, str]) -> tuple[str, dict]:
    """Wait until the run has a gate open or has ended, then return (the first open
    gate or "", ``analysis status --json``). The wait is a query from this process:
    one CLI call per wait, not one per poll (each is a fresh interpreter)."""
    handle = client.get_workflow_handle(wf_id)

    async def gate_or_end() -> bool:
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return True
        return bool(await handle.query(AnalysisWorkflow.pending_gates))

    await eventually(gate_or_end, f"a gate of {wf_id} or its end", 60, every=0.05)
    proc = await acli("analysis", "status", wf_id, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    gates = status["state"]["pending_gates"]
    return (gates[0]["gate"] if gates else ""), status


async def test_report_from_markdown_sources_via_the_cli(dev_env, env, task_queue, tmp_path):
    settings = Settings(_env_file=None, orchestrator_home=tmp_path / "home",
                        temporal_task_queue=task_queue, llm_provider="offline")
    outline = tmp_path / "outline.md"
    outline.write_text("- E-invoicing: every German business must receive e-invoices "
                       "from 2025\n- Competition: DATEV integration decides what tax "
                       "advisers recommend\n- Recommendation: enter with DATEV export "
                       "(opinion)\n")
    async with make_worker(dev_env.client, settings):
        started = await acli("analysis", "start", "--problem", str(FIXTURES / "problem.md"),
                             "--source", str(FIXTURES / "german-e-invoicing.md"),
                             "--slug", f"germany-{task_queue[-8:]}", "--json", env=env)
        assert started.returncode == 0, started.stderr
        wf_id = json.loads(started.stdout)["workflow_id"]
        assert wf_id.startswith("analysis-germany-")

        gate, _ = await open_gate(dev_env.client, wf_id, env)
        assert gate == "sources"
        assert_one_line_error(await acli("analysis", "choose", wf_id, "--add-source",
                                         str(tmp_path / "missing.md"), env=env),
                              "does not exist")
        chose = await acli("analysis", "choose", wf_id, "--add-source",
                           str(FIXTURES / "competitors.md"), env=env)
        assert chose.returncode == 0, chose.stderr
        seen = []
        while True:
            gate, status = await open_gate(dev_env.client, wf_id, env)
            if not gate:
                break
            seen.append(gate)
            if gate == "clarify":
                proc = await acli("analysis", "answer", wf_id, "--answer",
                                  "about entering a competitive market", env=env)
            elif gate == "outline" and "outline" not in seen[:-1]:
                text = (await acli("analysis", "status", wf_id, env=env)).stdout
                assert "open gate outline" in text and "LLM ledger" in text
                assert "analysis_analyst" in text and "provider: offline" in text
                proc = await acli("analysis", "revise", wf_id, "--comment", "my outline",
                                  "--content-file", str(outline), env=env)
            else:
                proc = await acli("analysis", "approve", wf_id, env=env)
            assert proc.returncode == 0, proc.stderr
        assert status["status"] == "COMPLETED", status
        result = await acli("analysis", "result", wf_id, env=env)
    assert result.returncode == 0, result.stderr
    assert seen.count("outline") == 2 and "proposal" in seen
    report = Path(result.stdout.splitlines()[0])
    meta, body = split_frontmatter(report.read_text())
    assert meta["provider"] == "offline"
    assert "DATEV integration decides" in body and "[Source: analyst-" not in body
    cmap = json.loads((report.parent / "citation_map.json").read_text())
    loaded = {s["id"]: s for s in cmap["sources"]}
    for sid, name in (("L0-1", "german-e-invoicing.md"), ("L0-2", "competitors.md")):
        assert loaded[sid]["sha256"] == hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()
    assert loaded["L0-1"]["title"] == "German e-invoicing mandate"
    assert set(inline_citations(body)) <= set(loaded)


@pytest.mark.parametrize(("args", "extra_env", "message"), [
    (["--problem", "missing.md"], {}, "cannot read the problem file missing.md"),
    (["--problem", str(FIXTURES / "problem.md"), "--source", "nope/"], {},
     "source nope/ does not exist"),
    (["--problem", str(FIXTURES / "problem.md"), "--web-search"], {}, "needs EXA_API_KEY"),
    (["--problem", str(FIXTURES / "problem.md")], {"ANALYSIS_CATALOGUE": "/nonexistent.yaml"},
     "cannot read the analysis catalogue"),
])
async def test_bad_start_input_is_one_line(env, args, extra_env, message):
    proc = await acli("analysis", "start", *args, env={**env, **extra_env})
    assert_one_line_error(proc, message)


async def test_budget_gate_from_the_cli(dev_env, env, task_queue, tmp_path):
    settings = Settings(_env_file=None, orchestrator_home=tmp_path / "home",
                        temporal_task_queue=task_queue, llm_provider="offline")
    async with make_worker(dev_env.client, settings):
        started = await acli("analysis", "start", "--problem", str(FIXTURES / "problem.md"),
                             "--budget", "0.000001", "--slug", f"budget-{task_queue[-8:]}",
                             "--json", env=env)
        assert started.returncode == 0, started.stderr
        wf_id = json.loads(started.stdout)["workflow_id"]
        gate, _ = await open_gate(dev_env.client, wf_id, env)
        assert gate == "sources"  # the parse call spent past the budget
        assert (await acli("analysis", "approve", wf_id, env=env)).returncode == 0
        for _ in range(100):
            gate, status = await open_gate(dev_env.client, wf_id, env)
            if gate == "budget":
                break
            await asyncio.sleep(0.1)
        assert gate == "budget"
        ledger = await acli("ledger", wf_id, env=env)
        assert "analysis_parse" in ledger.stdout and "of budget $0.0000" in ledger.stdout
        assert_one_line_error(await acli("budget", wf_id, "--usd", "0.0000001", env=env),
                              "above the")
        stopped = await acli("budget", wf_id, "--stop", "--comment", "enough", env=env)
        assert stopped.returncode == 0, stopped.stderr
        for _ in range(100):
            _, status = await open_gate(dev_env.client, wf_id, env)
            if status["status"] != "RUNNING":
                break
            await asyncio.sleep(0.1)
        assert status["status"] == "FAILED"
        assert "stopped at the budget gate" in status["state"]["failure_reason"]


async def test_added_sources_are_reviewed_then_the_clarify_gate_is_answered(
        dev_env, env, task_queue, tmp_path):
    """`choose --add-source` keeps the sources gate open with the added document (its
    title read from the reStructuredText) until `--proceed`; a problem that fits two
    synthesizers about equally opens the clarify gate, and `analysis answer` closes it."""
    settings = Settings(_env_file=None, orchestrator_home=tmp_path / "home",
                        temporal_task_queue=task_queue, llm_provider="offline")
    problem = tmp_path / "problem.md"
    problem.write_text("Strategy or regulation? Our market position depends on the new "
                       "e-invoicing law and compliance.\n")
    notes = tmp_path / "notes.rst"
    notes.write_text("Competitors in Germany\n======================\n\nDATEV and "
                     "lexoffice lead the market.\n")
    async with make_worker(dev_env.client, settings):
        started = await acli("analysis", "start", "--problem", str(problem), "--slug",
                             f"clarify-{task_queue[-8:]}", "--json", env=env)
        assert started.returncode == 0, started.stderr
        wf_id = json.loads(started.stdout)["workflow_id"]
        assert (await open_gate(dev_env.client, wf_id, env))[0] == "sources"
        chose = await acli("analysis", "choose", wf_id, "--add-source", str(notes), env=env)
        assert chose.returncode == 0, chose.stderr
        assert "stays open" in chose.stdout and "--proceed" in chose.stdout
        gate, status = await open_gate(dev_env.client, wf_id, env)
        assert gate == "sources"
        assert status["state"]["sources"] == ["L0-1 Competitors in Germany"]
        assert "added for review: L0-1 Competitors in Germany" in \
            status["state"]["pending_gates"][0]["prompt"]
        text = (await acli("analysis", "status", wf_id, env=env)).stdout
        assert "L0-1 Competitors in Germany" in text
        proceed = await acli("analysis", "choose", wf_id, "--proceed", env=env)
        assert proceed.returncode == 0, proceed.stderr
        gate, status = await open_gate(dev_env.client, wf_id, env)
        assert gate == "clarify", status
        assert status["state"]["questions"]
        assert "?" in (await acli("analysis", "status", wf_id, env=env)).stdout
        assert_one_line_error(await acli("analysis", "choose", wf_id, "--proceed", env=env),
                              "use approve / revise / answer")
        answered = await acli("analysis", "answer", wf_id, "--answer",
                              "mostly about our competitive market position", env=env)
        assert answered.returncode == 0, answered.stderr
        assert "clarify: approve accepted" in answered.stdout
        gate, status = await open_gate(dev_env.client, wf_id, env)
        assert gate == "proposal", status
        assert status["state"]["synthesizer"] == "strategy"
        audit = await acli("audit", wf_id, "--json", env=env)
        assert audit.returncode == 0, audit.stderr
        assert "clarify" in audit.stdout
        cancelled = await acli("cancel", wf_id, env=env)
        assert cancelled.returncode == 0, cancelled.stderr
