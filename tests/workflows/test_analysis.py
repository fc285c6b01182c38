"""AnalysisWorkflow on the time-skipping server with the offline LLM provider: every
gate, the analyst failure rules, the search limit, the enforced checks, the budget."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.analysis import (
    AnalysisActivities,
    cited_sentences,
    unsupported_report_citations,
)
from activities.artifacts import ArtifactStore
from activities.llm import LlmActivities, OfflineProvider, template_lines
from activities.web_search import WebSearchActivities, build_exa_client
from models.analysis import AnalysisResult, AnalysisState
from models.common import AuditEntry, Verdict
from models.llm import LlmLedger, ModelPrice
from tests.conftest import NO_SIGNERS
from tests.fakes import exa_api
from tests.workflows.analysis_harness import (
    DEFAULTS,
    EXAMPLE,
    FIXTURES,
    ScriptedLlm,
    analysis_request,
    decision,
    drive,
    with_data,
    workflow_id,
)
from workflows import analysis_checks as checks
from workflows.analysis import AnalysisWorkflow
from workflows.analysis_checks import split_frontmatter
from workflows.gates import GATE_SIGNAL, GATE_UPDATE


@pytest.fixture
def exa():
    with exa_api.serve() as fake:
        yield fake


@pytest.fixture
def llm() -> ScriptedLlm:
    """The worker's LLM activity; a test sets its ``hooks`` (and price) first."""
    return ScriptedLlm()


@pytest.fixture
async def run_analysis(ts_env, task_queue, tmp_path, exa, llm):
    """Run one analysis on a worker that lives as long as the test (queries after the
    end need it); returns (result or failure, handle)."""
    store = ArtifactStore(tmp_path / "artifacts")
    acts = AnalysisActivities(store)
    search = WebSearchActivities(build_exa_client("exa-test-key", exa.url))

    async def run(script=None, on_gate=None, **request):
        llm.inner.store = store  # source texts reach the LLM by reference
        handle = await ts_env.client.start_workflow(
            AnalysisWorkflow.run, analysis_request(**request), id=workflow_id(),
            task_queue=task_queue)
        handle.opened = await drive(handle, script, on_gate=on_gate)
        try:
            result = AnalysisResult.model_validate(await handle.result())
        except WorkflowFailureError as failure:
            return failure, handle
        report = Path(result.report.path).read_text()
        leaked = [line for lines in template_lines().values() for line in lines
                  if line in report]
        assert not leaked, f"prompt text in the report: {leaked}"
        return result, handle

    async with Worker(ts_env.client, task_queue=task_queue, workflows=[AnalysisWorkflow],
                      activities=[llm.llm_complete, *acts.activities(),
                                  search.web_search, NO_SIGNERS],
                      activity_executor=ThreadPoolExecutor(4)):
        yield run


def scores(values: dict[str, float]):
    """A scorer that gives ``values`` and suggests no analysts (the best
    synthesizer's defaults run)."""
    def hook(req, resp, n):
        kept = {k: v for k, v in resp.data.items() if k != "analysts"}
        return with_data(resp, {**kept, "scores": values})
    return hook


def history_text(history_json: str) -> str:
    """A history as ``temporal workflow show --output json`` prints it, with every
    payload's base64 ``data`` decoded, so a search sees what the payloads hold."""
    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "metadata" in node:
                node = {**node, "data": base64.b64decode(node["data"]).decode(
                    "utf-8", "replace")}
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node
    return json.dumps(walk(json.loads(history_json)), ensure_ascii=False)


async def audit(handle) -> list[AuditEntry]:
    return await handle.query("audit_log", result_type=list[AuditEntry])


async def test_every_gate_to_a_cited_report(run_analysis, llm, exa):
    close = {"strategy": 0.8, "innovation": 0.7, "policy": 0.1, "operations": 0.0}
    clear = {"strategy": 0.9, "innovation": 0.3, "policy": 0.1, "operations": 0.0}

    def parse(req, resp, n):  # close scores first; the answers make strategy clear
        assert ("mostly competition" in req.variables["clarifications"]) == (n == 2)
        return scores(close if n == 1 else clear)(req, resp, n)

    def citations(req, resp, n):  # P1 has no source: a gap for the web search
        return with_data(resp, {"citations": {**resp.data["citations"], "P1": []}})

    llm.hooks = {"analysis_parse": parse, "analysis_citations": citations}
    script = {
        "sources": [decision("sources", content={
            "add_sources": [str(FIXTURES / "competitors.md")], "web_search": True})],
        "clarify": [decision("clarify", content={"answers": ["mostly competition"]})],
        "proposal": [decision("proposal", Verdict.REVISE, "fewer analysts",
                              content={"analysts": ["market", "competition", "risk"]}),
                     decision("proposal")],
        "outline": [decision("outline", Verdict.REVISE, "add the DATEV point"),
                    decision("outline", Verdict.REVISE, "use mine", content=(
                        "- Market: German SMEs must adopt e-invoicing by 2028\n"
                        "- Competition: DATEV integration decides recommendations\n"
                        "- Recommendation: enter in 2026 with DATEV export (opinion)\n")),
                    decision("outline")],
    }
    prompts = []

    async def on_gate(handle, gate):
        if gate == "sources":
            state = await handle.query("state", result_type=AnalysisState)
            prompts.append((state.pending_gates[0].prompt, list(state.sources)))

    result, handle = await run_analysis(script, on_gate=on_gate, web_search_available=True)
    assert isinstance(result, AnalysisResult), result
    # adding a source kept the sources gate open, listing it for review
    assert handle.opened == ["sources", "sources", "clarify", "proposal", "proposal",
                             "outline", "outline", "outline"]
    assert "added for review" not in prompts[0][0] and len(prompts[0][1]) == 1
    assert "added for review: L0-2 Competitor notes" in prompts[1][0], prompts[1][0]
    assert str(FIXTURES / "competitors.md") in prompts[1][0] and len(prompts[1][1]) == 2
    assert result.synthesizer == "strategy" and result.analysts == [
        "market", "competition", "risk"]
    assert sorted(c.variables["analyst_id"] for c in llm.phase_calls("analysis_analyst")) == [
        "competition", "market", "risk"]
    assert len(llm.phase_calls("analysis_outline")) == 2  # the feedback regenerated it
    assert "add the DATEV point" in llm.phase_calls("analysis_outline")[1].variables["feedback"]

    report = Path(result.report.path).read_text()
    meta, body = split_frontmatter(report)
    assert meta["provider"] == "offline" and meta["synthesizer"] == "strategy"
    assert "[Source: analyst-" not in report
    assert "## Competition" in body and "DATEV integration decides" in body
    cmap = json.loads(Path(result.citation_map.path).read_text())
    assert cmap["provider"] == "offline"
    levels = {s["id"]: s["level"] for s in cmap["sources"]}
    assert levels["L0-1"] == levels["L0-2"] == "L0" and "L1" in levels.values()
    assert [levels[s] for s in cmap["citations"]["P1"]] == ["L2", "L2"]  # gap filled
    assert len(exa.requests) == 1 and "German SMEs" in exa.requests[0]["query"]
    assert f"[{'; '.join(cmap['citations']['P1'])}]" in body

    entries = await audit(handle)
    decided = [e.detail.split(":")[0] for e in entries if e.kind == "decision"]
    assert decided == ["sources", "sources", "clarify", "proposal", "proposal", "outline",
                       "outline", "outline"]
    assert any(e.kind == "outline_edited" for e in entries)
    ledger = await handle.query("llm_ledger", result_type=LlmLedger)
    calls = {p.phase: p.calls for p in ledger.by_phase}
    assert calls == {"analysis_parse": 2, "analysis_clarify": 1, "analysis_proposal": 2,
                     "analysis_analyst": 3, "analysis_integrate": 1, "analysis_outline": 2,
                     "analysis_citations": 1, "analysis_full_text": 1}
    assert result.llm_cost_usd == pytest.approx(ledger.total_usd) and ledger.total_usd > 0


async def test_bad_gate_content_is_refused_at_once(run_analysis, llm):
    refused = []

    async def on_gate(handle, gate):
        if gate != "proposal" or refused:
            return
        for content, message in (({"analysts": ["astrologer"]}, "unknown: astrologer"),
                                 ({"web_search": True}, "EXA_API_KEY"),
                                 ("not json", "invalid content")):
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await handle.execute_update(GATE_UPDATE, decision(
                    "proposal", Verdict.REVISE, "x", content=content))
            refused.append(message in str(err.value.cause))

    result, _ = await run_analysis(on_gate=on_gate)
    assert refused == [True, True, True]
    assert isinstance(result, AnalysisResult)


def fail_analysts(*names: str, invalid_once: str | None = None):
    def hook(req, resp, n):
        aid = req.variables["analyst_id"]
        if aid in names:
            raise ApplicationError(f"model overloaded for {aid}", non_retryable=True)
        if aid == invalid_once and req.variables["previous_error"] == "(none)":
            return resp.model_copy(update={"text": "I forgot the frontmatter."})
        return resp
    return hook


STRATEGY = scores({"strategy": 1.0, "innovation": 0.1, "policy": 0.0, "operations": 0.0})


async def test_two_failed_analysts_abort_the_run(run_analysis, llm):
    llm.hooks = {"analysis_parse": STRATEGY,
                       "analysis_analyst": fail_analysts("market", "risk")}
    failure, handle = await run_analysis()
    assert isinstance(failure, WorkflowFailureError)
    assert "2 of 5 analysts failed" in str(failure.cause) and "market" in str(failure.cause)
    called = [c.variables["analyst_id"] for c in llm.phase_calls("analysis_analyst")]
    # every analyst once, then each failed one retried alone
    assert sorted(called[:5]) == sorted(["market", "competition", "financial", "risk",
                                         "customer"])
    assert called[5:] == ["market", "risk"]
    assert not llm.phase_calls("analysis_integrate")
    state = await handle.query("state", result_type=AnalysisState)
    assert state.phase.value == "FAILED" and "analysts failed" in state.failure_reason


async def test_graceful_degradation_goes_on_and_records_what_is_missing(run_analysis, llm):
    llm.hooks = {"analysis_parse": STRATEGY, "analysis_analyst": fail_analysts(
        "market", "risk", invalid_once="customer")}
    result, handle = await run_analysis(graceful_degradation=True)
    assert isinstance(result, AnalysisResult), result
    assert result.missing_analysts == ["market", "risk"]
    integrate = llm.phase_calls("analysis_integrate")[0].variables
    assert integrate["missing"] == "market, risk"
    assert "(customer)" in integrate["analyst_sections"]
    redo = [c for c in llm.phase_calls("analysis_analyst")
            if c.variables["analyst_id"] == "customer"]
    assert len(redo) == 2 and "YAML frontmatter" in redo[1].variables["previous_error"]
    kinds = [e.kind for e in await audit(handle)]
    assert "degraded" in kinds and "check_failed" in kinds


async def test_the_fourth_web_search_is_refused(run_analysis, llm, exa):
    def outline(req, resp, n):
        return with_data(resp, {"title": "Entry", "points": [
            {"heading": f"Point {i}", "claim": f"claim number {i}", "factual": True}
            for i in range(1, 6)]})

    def no_sources(req, resp, n):
        return with_data(resp, {"citations": {f"P{i}": [] for i in range(1, 6)}})

    llm.hooks = {"analysis_parse": STRATEGY, "analysis_outline": outline,
                       "analysis_citations": no_sources}
    result, handle = await run_analysis(web_search_available=True, web_search=True)
    assert isinstance(result, AnalysisResult), result
    assert len(exa.requests) == 3
    entries = await audit(handle)
    refused = [e.detail for e in entries if e.kind == "search_refused"]
    assert [d.split()[3] for d in refused] == ["P4", "P5"]
    assert "limit of 3 searches per run" in refused[0]
    cmap = json.loads(Path(result.citation_map.path).read_text())
    assert cmap["gaps"] == ["P4", "P5"]
    assert (await handle.query("state", result_type=AnalysisState)).searches_used == 3


async def test_a_citation_to_an_unloaded_source_is_caught(run_analysis, llm):
    def bogus(req, resp, n):
        return with_data(resp, {"citations": {**resp.data["citations"], "P1": ["L0-99"]}})

    llm.hooks = {"analysis_parse": STRATEGY, "analysis_citations": bogus}
    failure, handle = await run_analysis()
    assert isinstance(failure, WorkflowFailureError)
    assert "citation map failed validation twice" in str(failure.cause)
    assert "'L0-99', which is not a loaded or fetched source" in str(failure.cause)
    second = llm.phase_calls("analysis_citations")[1].variables["previous_error"]
    assert "L0-99" in second  # the step was redone with the error
    assert not llm.phase_calls("analysis_full_text")


async def test_a_report_without_frontmatter_is_redone_then_fails(run_analysis, llm):
    def no_frontmatter(req, resp, n):
        return resp.model_copy(update={"text": "# Report\n\nNo frontmatter here [L0-1]."})

    llm.hooks = {"analysis_parse": STRATEGY, "analysis_full_text": no_frontmatter}
    failure, _ = await run_analysis()
    assert "full text failed validation twice" in str(failure.cause)
    assert len(llm.phase_calls("analysis_full_text")) == 2


async def test_llm_scoring_failure_falls_back_to_keywords(run_analysis, llm):
    def broken(req, resp, n):
        raise ApplicationError("scorer unavailable", non_retryable=True)

    llm.hooks = {"analysis_parse": broken}
    result, handle = await run_analysis()
    assert isinstance(result, AnalysisResult), result
    state = await handle.query("state", result_type=AnalysisState)
    assert state.scoring == "keywords" and state.synthesizer == "strategy"
    assert any(e.kind == "fallback" for e in await audit(handle))


async def test_budget_gate_waits_and_a_raise_lets_it_finish(run_analysis, llm):
    llm.hooks = {"analysis_parse": STRATEGY}
    llm.inner = LlmActivities(OfflineProvider(ModelPrice(input=100, output=100)))
    result, handle = await run_analysis(budget_usd=0.02)
    assert isinstance(result, AnalysisResult), result
    assert "budget" in handle.opened
    raised = [e for e in await audit(handle) if e.kind == "budget_raised"]
    assert raised and "$1000.0000" in raised[0].detail


async def test_budget_gate_reject_stops_the_run(run_analysis, llm):
    llm.hooks = {"analysis_parse": STRATEGY}
    llm.inner = LlmActivities(OfflineProvider(ModelPrice(input=100, output=100)))
    failure, handle = await run_analysis(script={"budget": [decision(
        "budget", Verdict.REJECT, "too expensive")]}, budget_usd=0.02)
    assert isinstance(failure, WorkflowFailureError)
    assert "stopped at the budget gate by reviewer: too expensive" in str(failure.cause)
    assert (await handle.query("state", result_type=AnalysisState)).phase.value == "FAILED"


async def test_a_budget_gate_open_for_days_continues_as_new_and_resumes_the_analysts(
        run_analysis, llm, ts_env):
    """The budget gate, reached while the analysts run one at a time (each approve
    raises the budget just above the spend, so the next call waits again), stays
    open for ten simulated days with a reminder every 6 hours and a history budget
    of 100 events: the run continues as new there (twice), carrying the analysts done so
    far; after the approve the last run runs only the analysts not done and ends
    with the report."""
    llm.hooks = {"analysis_parse": STRATEGY}
    llm.inner = LlmActivities(OfflineProvider(ModelPrice(input=100, output=100)))
    waited: list[list[str]] = []  # the analysts done when the long wait began

    async def at_gate(handle, gate):
        if gate != "budget":
            return None
        state = await handle.query(AnalysisWorkflow.state)
        if state.phase.value == "ANALYSTS" and state.analysts_done and not waited:
            waited.append(list(state.analysts_done))
            await ts_env.sleep(timedelta(days=10))  # reminders, no decision
            return False
        if waited:
            return None  # the default: approve with $1000
        spent = (await handle.query(AnalysisWorkflow.llm_ledger)).total_usd
        await handle.execute_update(GATE_UPDATE, decision("budget", content=f"{spent + 1e-4}"))
        return False

    result, handle = await run_analysis(on_gate=at_gate, budget_usd=0.02,
                                        analyst_concurrency=1, history_budget=100,
                                        reminder_interval=timedelta(hours=6))
    assert isinstance(result, AnalysisResult), result
    assert waited and result.phase.value == "DONE"
    runs = await history_chain(handle)
    log = result.audit
    continued = [e for e in log if e.kind == "continued_as_new"]
    assert len(continued) == len(runs) - 1
    # each run that waited at the budget gate continued as new there, near its budget
    # (a later run may also continue as new at the outline gate)
    at_budget = [len(r) for r, e in zip(runs, continued, strict=False)
                 if e.detail.startswith("budget ")]
    assert len(at_budget) >= 2 and all(n < 100 + 30 for n in at_budget), \
        [len(r) for r in runs]
    assert sum(e.kind == "reminder" for e in log) >= 35  # 10 days at one per 6 hours
    assert any(e.kind == "gate_resumed" and "budget" in e.detail for e in log)
    # the work done before is kept: every analyst ran once, none again after the wait
    analysts = result.analysts
    assert len(analysts) >= 2 and set(waited[0]) < set(analysts)
    assert sorted(c.variables["analyst_id"] for c in llm.phase_calls("analysis_analyst")) \
        == sorted(analysts)
    ledger = await handle.query("llm_ledger", result_type=LlmLedger)
    assert result.llm_cost_usd == pytest.approx(ledger.total_usd)
    assert {p.phase: p.calls for p in ledger.by_phase}["analysis_analyst"] == len(analysts)
    meta, body = split_frontmatter(Path(result.report.path).read_text())
    assert meta["sources"] and checks.inline_citations(body)


async def test_a_source_that_fails_to_load_reopens_the_sources_gate(run_analysis, llm, tmp_path):
    llm.hooks = {"analysis_parse": STRATEGY}
    script = {"sources": [decision("sources", content={
        "add_sources": [str(tmp_path / "gone.md")]}), decision("sources")]}
    result, handle = await run_analysis(script)
    assert isinstance(result, AnalysisResult), result
    assert handle.opened[:2] == ["sources", "sources"]
    refused = [e for e in await audit(handle) if e.kind == "sources_refused"]
    assert refused and "gone.md does not exist" in refused[0].detail


async def test_an_unanswered_gate_expires_and_the_run_fails(ts_env, run_analysis, llm):
    from datetime import timedelta

    llm.hooks = {"analysis_parse": STRATEGY}

    async def never(handle, gate):
        await ts_env.sleep(timedelta(days=3))
        return False

    failure, handle = await run_analysis(on_gate=never, gate_expiry=timedelta(days=2),
                                         reminder_interval=timedelta(days=1))
    assert isinstance(failure, WorkflowFailureError)
    assert "gate sources expired" in str(failure.cause)
    kinds = [e.kind for e in await audit(handle)]
    assert kinds.count("reminder") == 1 and "expired" in kinds


async def test_offline_analysis_is_grounded_in_the_sources(run_analysis, llm):
    """The offline provider, untouched: a library choice gets the matching
    synthesizer and lenses, the title is the problem's heading, every finding is a
    sentence of the source it cites, and every citation supports its sentence."""
    docs = sorted(p for p in EXAMPLE.glob("*.md") if p.name != "problem.md")
    result, handle = await run_analysis(problem=(EXAMPLE / "problem.md").read_text(),
                                        title="reset links", sources=[str(p) for p in docs])
    assert isinstance(result, AnalysisResult), result
    assert result.synthesizer == "innovation" and "technology" in result.analysts
    assert "policy" not in result.synthesizer and "regulatory" not in result.analysts
    report = Path(result.report.path).read_text()
    meta, body = split_frontmatter(report)
    assert meta["title"] == "Which library should sign our password-reset links?"
    assert meta["provider"] == "offline"
    cmap = json.loads(Path(result.citation_map.path).read_text())
    registry = [checks.SourceDoc.model_validate(s) for s in cmap["sources"]]
    assert all(s.text == "" and s.text_ref for s in registry if s.level == "L0")
    registry = [s.model_copy(update={"text": Path(s.text_ref.path).read_text()})
                if s.text_ref else s for s in registry]
    texts = {s.id: " ".join(s.text.split()) for s in registry}
    quotes = re.findall(r'^- "(.+)" \[(L0-\d+)\]', body, re.M)
    assert quotes and all(q.replace("**", "") in texts[sid].replace("**", "")
                          for q, sid in quotes)
    assert cited_sentences(body)
    assert unsupported_report_citations(body, registry) == []
    loaded = [s.id for s in registry if s.level == "L0"]
    assert set(loaded) <= set(meta["sources"]) | set(meta["uncited_sources"])
    assert all(s.role == "framework" for s in registry if s.level == "L1")
    assert meta["frameworks"] and all(f.startswith("L1-") for f in meta["frameworks"])
    assert not any(e.kind == "citations_unsupported" for e in await audit(handle))


async def test_unsupported_citations_are_redone_once_then_marked(run_analysis, llm):
    """A map that cites only a framework, and a report sentence cited to a source that
    does not say it: each step is redone once with the problem, then the citation is
    dropped from the map and marked in the report."""
    def framework_only(req, resp, n):
        return with_data(resp, {"citations": {**resp.data["citations"], "P1": ["L1-1"]}})

    claim = "PyJWT tokens can be verified by a Node.js service [L0-1]."

    def wrong_source(req, resp, n):
        return resp.model_copy(update={"text": resp.text.rstrip() + f"\n\n{claim}\n"})

    llm.hooks = {"analysis_parse": STRATEGY, "analysis_citations": framework_only,
                 "analysis_full_text": wrong_source}
    result, handle = await run_analysis()
    assert isinstance(result, AnalysisResult), result
    citation_calls = llm.phase_calls("analysis_citations")
    assert len(citation_calls) == 2
    assert "P1 cites L1-1" in citation_calls[1].variables["previous_error"]
    cmap = json.loads(Path(result.citation_map.path).read_text())
    assert cmap["unsupported"] == {"P1": ["L1-1"]} and "P1" in cmap["gaps"]
    full = llm.phase_calls("analysis_full_text")
    assert len(full) == 2 and "Node.js" in full[1].variables["previous_error"]
    meta, body = split_frontmatter(Path(result.report.path).read_text())
    assert "PyJWT tokens can be verified by a Node.js service. (unsupported citation: " \
           "L0-1)" in body
    assert meta["unsupported_citations"][0].startswith("L0-1: PyJWT tokens")
    kinds = [e.kind for e in await audit(handle)]
    assert kinds.count("citations_unsupported") == 2


async def test_with_a_model_a_judge_overrules_the_lexical_check_per_section(run_analysis, llm):
    """In a run with a model, sentences the lexical check flags go to a judge call
    (one per report section, priced in the ledger): a paraphrase the judge accepts
    keeps its citation; one it refuses is redone once, then marked."""
    paraphrase = "Electronic bills will soon be compulsory for every company [L0-1]."
    wrong = "PyJWT tokens can be verified by a Node.js service [L0-1]."

    def as_model(hook=None):  # the offline answers, billed as a model's
        def wrapped(req, resp, n):
            resp = hook(req, resp, n) if hook else resp
            return resp.model_copy(update={"usage": resp.usage.model_copy(
                update={"provider": "anthropic"})})
        return wrapped

    def full_text(req, resp, n):
        return resp.model_copy(update={"text": resp.text.rstrip()
                                       + f"\n\n## Added\n\n{paraphrase} {wrong}\n"})

    def judge(req, resp, n):
        claims = req.variables["claims"].split("\n")
        verdicts = [{"claim": int(line.split(".")[0]), "supported": "compulsory" in line,
                     "reason": "checked"} for line in claims if line[:1].isdigit()]
        return with_data(resp, {"verdicts": verdicts})

    phases = ["analysis_clarify", "analysis_proposal", "analysis_analyst",
              "analysis_integrate", "analysis_outline", "analysis_citations"]
    llm.hooks = {**{p: as_model() for p in phases}, "analysis_parse": as_model(STRATEGY),
                 "analysis_full_text": as_model(full_text),
                 "analysis_citation_judge": as_model(judge)}
    result, handle = await run_analysis()
    assert isinstance(result, AnalysisResult), result
    judged = llm.phase_calls("analysis_citation_judge")
    assert len(judged) == 2  # the "Added" section, in the draft and in the redo
    assert "compulsory" in judged[0].variables["claims"]
    assert "German business must be able to receive structured" in judged[0].variables[
        "claims"]  # the best passage of the cited source is shown to the judge
    meta, body = split_frontmatter(Path(result.report.path).read_text())
    assert paraphrase in body  # judged supported: the citation stays
    assert "Node.js service. (unsupported citation: L0-1)" in body
    ledger = await handle.query("llm_ledger", result_type=LlmLedger)
    assert {p.phase: p.calls for p in ledger.by_phase}["analysis_citation_judge"] == 2
    assert any(e.kind == "citations_judged" for e in await audit(handle))


async def test_with_a_model_the_first_analyst_warms_the_prompt_cache(run_analysis, llm):
    """A run with a model starts one analyst, and the others only once it is done
    (they then read the shared source block from the cache); offline they all start
    at once."""
    def as_model(hook=None):
        def wrapped(req, resp, n):
            resp = hook(req, resp, n) if hook else resp
            return resp.model_copy(update={"usage": resp.usage.model_copy(
                update={"provider": "anthropic"})})
        return wrapped

    def analyst_order(events) -> tuple[list[int], list[int]]:
        scheduled, completed = {}, []
        for e in events:
            if e.HasField("activity_task_scheduled_event_attributes"):
                a = e.activity_task_scheduled_event_attributes
                if a.activity_type.name == "llm_complete" and json.loads(
                        a.input.payloads[0].data)["phase"] == "analysis_analyst":
                    scheduled[e.event_id] = e.event_id
            elif e.HasField("activity_task_completed_event_attributes"):
                if e.activity_task_completed_event_attributes.scheduled_event_id in scheduled:
                    completed.append(e.event_id)
        return sorted(scheduled), completed

    llm.hooks = {"analysis_parse": as_model(STRATEGY)}
    result, handle = await run_analysis()
    assert isinstance(result, AnalysisResult), result
    starts, done = analyst_order((await handle.fetch_history()).events)
    assert len(starts) == 5 and starts[1] > done[0]  # the others after the first
    assert any(e.kind == "cache_warmup" for e in await audit(handle))

    llm.hooks = {"analysis_parse": STRATEGY}
    llm.calls.clear()
    result, handle = await run_analysis()
    starts, done = analyst_order((await handle.fetch_history()).events)
    assert len(starts) == 5 and starts[-1] < done[0]  # offline: all at once


async def test_offline_without_sources_the_report_says_it_has_no_evidence(run_analysis, llm):
    """No documents: nothing to quote, so no point is presented as fact and the report
    is written without citations instead of failing its citation check."""
    llm.hooks = {"analysis_parse": STRATEGY}
    result, handle = await run_analysis(sources=[])
    assert isinstance(result, AnalysisResult), result
    meta, body = split_frontmatter(Path(result.report.path).read_text())
    assert meta["sources"] == [] and meta["uncited_sources"] == []
    assert not checks.inline_citations(body)
    assert "No passage of the loaded sources" not in body  # analysts' notes, not claims
    assert "Should we enter the German market" in meta["title"]
    assert any(e.kind == "no_evidence" for e in await audit(handle))


async def test_source_texts_stay_out_of_history(run_analysis, llm, tmp_path):
    """A source's text travels by reference: a marker sentence from it reaches the
    LLM prompts (rendered by the activity from the artifact store) but appears
    nowhere in the run's history, while the analysis still ends with a cited report."""
    marker = "Quixotic zebrafinch marmalade 7731 flummoxed"
    source = tmp_path / "private.md"
    text = (FIXTURES / "german-e-invoicing.md").read_text()
    heading, rest = text.split("\n", 1)
    source.write_text(f"{heading}\n\n{marker} here.\n\n{rest}")
    llm.hooks = {"analysis_parse": STRATEGY}
    result, handle = await run_analysis(sources=[str(source)])
    assert isinstance(result, AnalysisResult), result
    assert any(marker in str(c.variables.get("sources", "")) for c in llm.calls)
    assert not any(marker in c.model_dump_json() for c in llm.sent)
    history = history_text((await handle.fetch_history()).to_json())
    assert marker not in history and "zebrafinch" not in history
    assert "text_ref" in history  # the texts went by reference (and decoding works)
    meta, body = split_frontmatter(Path(result.report.path).read_text())
    assert "L0-1" in meta["sources"] and checks.inline_citations(body)
    kinds = [e.kind for e in await audit(handle)]
    assert "check_passed" in kinds


async def history_chain(handle) -> list[list]:
    """The events of each run of ``handle``'s workflow, first run first (following
    continue-as-new)."""
    runs, run_id = [], handle.first_execution_run_id or handle.result_run_id
    while run_id:
        history = await handle._client.get_workflow_handle(
            handle.id, run_id=run_id).fetch_history()
        runs.append(history.events)
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes")
                  else None)
    return runs


async def test_outline_revise_rounds_add_flat_history(run_analysis, llm):
    """Twenty revise rounds at the outline gate, each with a 4 KB comment: each round
    passes its own comment and a reference to the earlier rounds' feedback file, so
    every round adds about the same bytes to the history (re-sending all comments
    would add one comment more each round)."""
    sizes: list[int] = []
    comment = "Name the DATEV point and the 2028 deadline. " * 90  # ~4 KB

    async def measure(handle, gate):
        if gate == "outline":
            history = await handle.fetch_history()
            sizes.append(sum(e.ByteSize() for e in history.events))

    llm.hooks = {"analysis_parse": STRATEGY}
    script = {"outline": [decision("outline", Verdict.REVISE, f"{n}: {comment}")
                          for n in range(20)]}
    result, handle = await run_analysis(script=script, on_gate=measure)
    assert isinstance(result, AnalysisResult), result
    outline_calls = llm.phase_calls("analysis_outline")
    assert len(outline_calls) == 21
    assert outline_calls[-1].variables["feedback"].count("- ") >= 20  # all rounds read
    assert all(comment not in c.model_dump_json() for c in llm.sent)  # by reference
    deltas = [b - a for a, b in zip(sizes, sizes[1:], strict=False)]
    assert len(deltas) == 20
    assert max(deltas) < 1.1 * min(deltas), deltas  # flat: no round re-sends the others


async def test_a_long_open_gate_continues_as_new_and_finishes(run_analysis, llm):
    """With a history budget of 150 events, an outline gate revised twelve times
    continues as new, each run carrying the state, the audit, the ledger, the
    feedback file and the open gate; no run grows past the budget while it waits,
    and the last one ends with the report."""
    llm.hooks = {"analysis_parse": STRATEGY}
    long = "round 0: shorter " + "and name the 2028 deadline " * 100  # ~2.7 KB
    rounds = [decision("outline", Verdict.REVISE, long if n == 0 else f"round {n}: shorter")
              for n in range(12)]

    async def by_signal(handle, gate):
        # decided by signal: a signal that arrives while the run continues as new is
        # handled before it (the server fails that workflow task); an update in
        # flight then is aborted (the time-skipping server leaves the caller waiting)
        await handle.signal(GATE_SIGNAL, rounds.pop(0) if gate == "outline" and rounds
                            else DEFAULTS.get(gate, decision(gate)))
        await asyncio.sleep(0.05)
        return False

    result, handle = await run_analysis(on_gate=by_signal, history_budget=150)
    assert isinstance(result, AnalysisResult), result
    runs = await history_chain(handle)
    lengths = [len(r) for r in runs]
    # a run continues as new at its first gate wait over the budget: it may pass the
    # budget by the events of the step before that wait (here the analysts), no more
    assert len(runs) >= 3 and all(n < 150 + 30 for n in lengths), lengths
    log = result.audit
    assert sum(e.kind == "continued_as_new" for e in log) == len(runs) - 1
    outline_decisions = [e for e in log if e.kind == "decision" and "outline" in e.detail]
    assert len(outline_decisions) == 13  # every decision of every run, in order
    assert [e.comment for e in outline_decisions[1:12]] == [f"round {n}: shorter"
                                                           for n in range(1, 12)]
    # carried comments are excerpts (the input of the next run stays small) ...
    assert outline_decisions[0].comment.endswith(f"[{len(long):,} characters in all]")
    feedback = llm.phase_calls("analysis_outline")[-1].variables["feedback"]
    assert long in feedback  # ... the feedback file keeps every comment whole
    assert all(f"round {n}: shorter" in feedback for n in range(12))
    ledger = await handle.query("llm_ledger", result_type=LlmLedger)
    assert {p.phase: p.calls for p in ledger.by_phase}["analysis_outline"] == 13
    assert result.llm_cost_usd == pytest.approx(ledger.total_usd)
    meta, body = split_frontmatter(Path(result.report.path).read_text())
    assert meta["sources"] and checks.inline_citations(body)
