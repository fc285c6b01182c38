"""AnalysisWorkflow: the strategic analysis pipeline of seed 004 as a durable workflow.

PARSE (language, synthesizer scores by LLM with a keyword fallback, template)
-> SOURCES gate (proceed, enable web search, or add L0 documents: the gate opens
   again listing them, to be reviewed before proceeding)
-> CLARIFY gate when the top two scores are within 0.2 (answers rescore)
-> PROPOSE gate (approve, or revise: synthesizer, template, analysts, web search)
-> ANALYSTS in parallel (each its own LLM activity, output validated, a failed
   analyst retried alone; 2+ failures abort unless graceful degradation)
-> INTEGRATE -> OUTLINE gate (approve, or revise with feedback or an edited outline)
-> CITATIONS (L0 + L1 mapped to outline points, gaps filled by at most
   ``max_web_searches`` L2 web searches; the map is validated)
-> FULL_TEXT (inline citations, analyst markers removed, frontmatter validated)
-> DONE with the report and its citation map written as artifacts.

Each enforced check that fails has its generating step redone once with the
error; a second failure ends the run FAILED with the reason.

Private data stays out of history: source texts are written to the artifact store
when loaded and travel as references (LLM calls get them as ``documents``), the
citation-support check runs in an activity, and revise feedback at the proposal and
outline gates is kept in a file per round. A run waiting at a gate (the budget gate
too) continues as new when its history is full, carrying its state (``AnalysisCarry``).
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar, NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows import policies, search_attributes
from workflows.gates import activity_failure, failure_message
from workflows.llm import LlmWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.analysis import (
        AnalysisActivities,
        judge_claims,
        mark_unsupported,
        sections,
        unsupported_map_citations,
        unsupported_report_citations,
    )
    from activities.web_search import WebSearchActivities
    from models.analysis import (
        CARRIED_COMMENT_CHARS,
        CLARIFY_GATE,
        OUTLINE_GATE,
        PROPOSAL_GATE,
        SOURCES_GATE,
        AnalysisCarry,
        AnalysisPhase,
        AnalysisRequest,
        AnalysisResult,
        AnalysisState,
        AnalystOutput,
        CitationMap,
        ClarifyAnswers,
        FeedbackInput,
        FlaggedCitation,
        LoadSourcesInput,
        MarkUnsupportedInput,
        Outline,
        OutlinePoint,
        ProposalChange,
        SourceDoc,
        SourcesChoice,
        SupportCheckInput,
        SupportGroup,
        WebSearchInput,
        WriteReportInput,
    )
    from models.common import ArtifactRef, GateDecision, GateInfo, Verdict
    from models.llm import DocumentRef, LlmRequest
    from models.text import excerpt
    from workflows import analysis_checks as checks
    from workflows.llm import BUDGET_GATE

NONE = "(none)"
CITATION_SUPPORT_PATCH = "citation-support"
"""Patch id: citations are checked for support (redo once, then marked) and the
report's frontmatter lists uncited sources and frameworks."""
NO_EVIDENCE_PATCH = "report-without-evidence"
"""Patch id: when no source supports any point (an empty citation map), the report
is accepted without inline citations instead of failing."""
CACHE_WARMUP_PATCH = "analyst-cache-warmup"
"""Patch id: with a model, the first analyst runs alone so that it writes the shared
source block to the prompt cache, then the others run in parallel and read it
(simultaneous first calls would each pay for a cache write)."""
CITATION_JUDGE_PATCH = "citation-judge"
"""Patch id: with a model, citations the lexical check finds unsupported go to a
judge call (one per citation map, one per report section) before they count."""
BY_REFERENCE_PATCH = "analysis-private-data-by-reference"
"""Patch id: source texts are written to the artifact store when loaded and travel as
references (LLM calls get them as ``LlmRequest.documents``), the citation-support
check runs in an activity that loads them, and reviewer feedback at the proposal and
outline gates is kept in a file per round passed by reference (runs recorded before
keep texts and feedback inline and check support in workflow code)."""
CONTINUE_AS_NEW_PATCH = "analysis-gates-continue-as-new"
"""Patch id: a run waiting at the sources, clarify, proposal or outline gate
continues as new when its history reaches ``AnalysisRequest.history_budget`` events
or Temporal suggests it, carrying its state, audit, ledger, sources and the open
gate (runs started before it never continue as new)."""
BUDGET_CONTINUE_AS_NEW_PATCH = "analysis-budget-gate-continues-as-new"
"""Patch id: a run waiting at the budget gate continues as new like one waiting at
another gate, carrying the work done so far (analyst outputs, the approved outline,
the citation map, the answered questions); the next run waits at the budget gate and
then redoes the step whose LLM call waited there (runs started before it never
continue as new at the budget gate)."""
SOURCES_REVIEW_PATCH = "sources-gate-reviews-added-sources"
"""Patch id: documents added at the sources gate are loaded and the gate opens
again, listing them, so the reviewer sees what was added before proceeding (runs
recorded before this went on at once)."""


@workflow.defn(name="AnalysisWorkflow")
class AnalysisWorkflow(LlmWorkflow):
    """The analysis pipeline of seed 004 (see the module docstring)."""

    phase_attribute = search_attributes.ANALYSIS_PHASE
    failed_phase: ClassVar[AnalysisPhase] = AnalysisPhase.FAILED
    failure_type = "AnalysisFailed"
    failure_label = "analysis"

    @workflow.init
    def __init__(self, req: AnalysisRequest) -> None:
        super().__init__()
        self._state = AnalysisState()
        self._req = req
        self.budget_usd = req.budget_usd
        self.budget_reminder_interval = req.reminder_interval
        self.budget_gate_expiry = req.gate_expiry
        self._state.web_search = req.web_search
        self._registry: list[SourceDoc] = []
        self._outputs: dict[str, AnalystOutput] = {}
        self._outline: Outline | None = None
        self._source_need_reason = ""
        self._suggested_analysts: list[str] = []
        self._by_ref = False  # BY_REFERENCE_PATCH, decided once at the start of run
        self._feedback: dict[str, ArtifactRef] = {}  # gate -> its feedback file
        self._feedback_rounds: dict[str, int] = {}  # gate -> revise rounds so far
        self._continues = False  # CONTINUE_AS_NEW_PATCH, decided once at the start of run
        self._added: list[SourceDoc] = []  # added at the sources gate, listed for review
        self._integration = ""
        self._draft: Outline | None = None  # the outline the outline gate reviews
        self._clarifications: str | None = None  # the answered questions
        self._cmap: CitationMap | None = None  # the validated citation map
        self._again: AnalysisPhase | None = None  # re-entered after the budget gate
        if req.carried is not None:  # continued as new at a gate
            c = req.carried
            self._state = c.state.model_copy(update={"pending_gates": []})
            self._audit.extend(c.audit)
            self.ledger = list(c.ledger)
            self.budget_usd = c.budget_usd
            self._registry = list(c.registry)
            self._source_need_reason = c.source_need_reason
            self._suggested_analysts = list(c.suggested_analysts)
            self._added = [s for s in self._registry if s.id in c.added]
            self._integration = c.integration
            self._draft = c.outline
            self._feedback = dict(c.feedback)
            self._feedback_rounds = dict(c.feedback_rounds)
            self._outputs = dict(c.outputs)
            self._clarifications = c.clarifications
            self._outline = c.approved_outline
            self._cmap = c.citation_map
            if c.gate.gate == BUDGET_GATE:  # its phase is entered again, its gate reopened
                self._again = c.state.phase
                self.budget_resume = c.gate

    # -- queries and decisions --------------------------------------------
    @workflow.query(name="state")
    def state(self) -> AnalysisState:
        """Phase, choices so far, sources, analysts, outline, searches, LLM spend, gates."""
        budget = f"${self.budget_usd:.2f}" if self.budget_usd is not None else "unlimited"
        return self._state.model_copy(update={
            "pending_gates": self.pending_gates(),
            "sources": [f"{s.id} {s.title}" for s in self._registry],
            "llm": f"${self.spent_usd():.4f} of {budget} in {len(self.ledger)} call(s)"})

    def decision_problem(self, decision: GateDecision) -> str | None:
        """Gate checks, plus the content each analysis gate accepts."""
        problem = super().decision_problem(decision)
        if problem or decision.verdict == Verdict.REJECT or not decision.content:
            if not problem and decision.gate == CLARIFY_GATE and \
                    decision.verdict != Verdict.REJECT:
                return "answer the questions: `analysis answer ID --answer TEXT ...`"
            return problem
        assert self._req is not None
        cat = self._req.catalogue
        try:
            if decision.gate == SOURCES_GATE:
                choice = SourcesChoice.model_validate_json(decision.content)
                if choice.web_search and not self._req.web_search_available:
                    return "web search is not available: set EXA_API_KEY on the worker"
            elif decision.gate == CLARIFY_GATE:
                ClarifyAnswers.model_validate_json(decision.content)
            elif decision.gate == PROPOSAL_GATE:
                if decision.verdict == Verdict.APPROVE:
                    return ("approve takes no content at the proposal gate; change the plan "
                            "with `analysis choose` (a revise), then approve")
                change = ProposalChange.model_validate_json(decision.content)
                if change.synthesizer and change.synthesizer not in cat.synthesizers:
                    return (f"unknown synthesizer {change.synthesizer!r} (known: "
                            f"{', '.join(cat.synthesizers)})")
                if change.template and change.template not in cat.templates:
                    return (f"unknown template {change.template!r} (known: "
                            f"{', '.join(cat.templates)})")
                unknown = [a for a in change.analysts or [] if a not in cat.analysts]
                if unknown or change.analysts == []:
                    return (f"analysts must be a non-empty list of {', '.join(cat.analysts)}"
                            + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
                if change.web_search and not self._req.web_search_available:
                    return "web search is not available: set EXA_API_KEY on the worker"
            elif decision.gate == OUTLINE_GATE:
                checks.parse_edited_outline(decision.content, "outline")
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            return f"invalid content for gate {decision.gate!r}: {err}".replace("\n", " ")
        return None

    # -- the run ------------------------------------------------------------
    @workflow.run
    async def run(self, req: AnalysisRequest) -> AnalysisResult:
        """Run the pipeline to DONE; raise ApplicationError when it ends FAILED."""
        self._by_ref = workflow.patched(BY_REFERENCE_PATCH)
        self._continues = workflow.patched(CONTINUE_AS_NEW_PATCH)
        if self._continues and workflow.patched(BUDGET_CONTINUE_AS_NEW_PATCH):
            self.budget_history_full = self._continue_as_new
            self.budget_history_budget = req.history_budget
        carried = req.carried
        # where a previous run continued as new (a gate, or the phase whose LLM call
        # waited at the budget gate) and the phases before it
        at = carried.state.phase if carried else AnalysisPhase.STARTED
        resume = carried.gate if carried and self._again is None else None
        order = [AnalysisPhase.STARTED, AnalysisPhase.PARSE, AnalysisPhase.SOURCES,
                 AnalysisPhase.CLARIFY, AnalysisPhase.PROPOSE, AnalysisPhase.ANALYSTS,
                 AnalysisPhase.INTEGRATE, AnalysisPhase.OUTLINE, AnalysisPhase.CITATIONS,
                 AnalysisPhase.FULL_TEXT]
        done = order.index(at)

        def todo(phase: AnalysisPhase) -> bool:
            return done <= order.index(phase)

        try:
            if carried is None and req.sources:
                await self._load(req.sources)
            if todo(AnalysisPhase.PARSE):
                await self._parse()
            if todo(AnalysisPhase.SOURCES):
                await self._sources_gate(resume if at == AnalysisPhase.SOURCES else None)
            if todo(AnalysisPhase.CLARIFY):
                await self._clarify(resume if at == AnalysisPhase.CLARIFY else None)
            if todo(AnalysisPhase.PROPOSE):
                await self._propose(resume if at == AnalysisPhase.PROPOSE else None)
            if todo(AnalysisPhase.ANALYSTS):
                await self._run_analysts()
            if todo(AnalysisPhase.INTEGRATE):
                self._integration = await self._integrate()
            if todo(AnalysisPhase.OUTLINE):
                await self._outline_phase(self._integration,
                                          resume if at == AnalysisPhase.OUTLINE else None)
            integration = self._integration
            if todo(AnalysisPhase.CITATIONS):
                self._cmap = await self._citations()
            assert self._cmap is not None
            cmap = self._cmap
            report = await self._full_text(cmap, integration)
            refs = await workflow.execute_activity_method(
                AnalysisActivities.write_report,
                WriteReportInput(workflow_id=workflow.info().workflow_id,
                                 report_markdown=report, citation_map=cmap),
                start_to_close_timeout=policies.ANALYSIS_IO_TIMEOUT,
                retry_policy=policies.ANALYSIS_IO_RETRY,
                summary="write the report and its citation map",
            )
            self.record("report_written", f"{refs.report.path} ({refs.report.bytes} bytes), "
                        f"citation map {refs.citation_map.path}")
            await self.transition(AnalysisPhase.DONE)
            await self.handlers_finished()
            return AnalysisResult(
                phase=AnalysisPhase.DONE, report=refs.report, citation_map=refs.citation_map,
                synthesizer=self._state.synthesizer, template=self._state.template,
                analysts=list(self._state.analysts),
                missing_analysts=list(self._state.missing_analysts),
                provider=self._providers(), llm_cost_usd=self.spent_usd(),
                audit=self.audit_log())
        except ActivityError as err:
            if is_cancelled_exception(err):  # cancelled: ends CANCELED, not FAILED
                await self._cancel()
                raise
            await self.fail(activity_failure(err))
        except ApplicationError as err:  # e.g. stopped at the budget gate
            if self.phase == AnalysisPhase.FAILED:  # raised by fail()
                raise
            await self.fail(err.message)
        except asyncio.CancelledError:
            await self._cancel()
            raise

    @property
    def phase(self) -> AnalysisPhase:
        """The run's phase (``state.phase``), changed only by :meth:`transition`."""
        return self._state.phase

    @phase.setter
    def phase(self, value: AnalysisPhase) -> None:
        self._state.phase = value

    async def on_fail(self, reason: str) -> None:
        """Before FAILED (see :meth:`fail`): keep the reason in the state."""
        self._state.failure_reason = reason

    async def _enter(self, phase: AnalysisPhase, detail: str = "") -> None:
        """Transition to ``phase``, except the first time a run that continued as new
        at the budget gate re-enters the phase it was in (it is in it already)."""
        if self._again == phase:
            self._again = None
            return
        await self.transition(phase, detail)

    async def _cancel(self) -> None:
        if self._state.phase not in (AnalysisPhase.FAILED, AnalysisPhase.CANCELED):
            self._state.failure_reason = "canceled"
            await self.transition(AnalysisPhase.CANCELED)

    async def _gate(self, gate: str, prompt: str, resume: GateInfo | None = None
                    ) -> GateDecision:
        """Wait at ``gate`` (``resume``: the gate as the previous run left it, when
        this run continued as new there); continue as new when the history is full."""
        assert self._req
        decision = await self.wait_for_decision(
            gate, prompt=prompt, reminder_interval=self._req.reminder_interval,
            expires_after=self._req.gate_expiry,
            artifact=f"python starter.py analysis status {workflow.info().workflow_id}",
            resume=resume, history_budget=self._req.history_budget,
            on_history_full=self._continue_as_new if self._continues else None)
        if decision is None:
            await self.fail(f"gate {gate} expired")
        return decision

    async def _continue_as_new(self, gate: GateInfo) -> NoReturn:
        """Continue as new at ``gate`` (the on_history_full hook of every gate, the
        budget gate's too), carrying what the next run needs to wait on and go on
        (see AnalysisCarry); the phase in the carried state says which gate it
        resumes at, or, at the budget gate, which phase's step it redoes."""
        assert self._req
        self.record("continued_as_new", f"{gate.gate} still open after "
                    f"{workflow.info().get_current_history_length()} history events")
        carry = AnalysisCarry(
            state=self._state.model_copy(update={"pending_gates": []}), gate=gate,
            audit=[e.model_copy(update={"comment": excerpt(e.comment, CARRIED_COMMENT_CHARS)})
                   for e in self.audit_log()],
            ledger=list(self.ledger), budget_usd=self.budget_usd,
            registry=list(self._registry), source_need_reason=self._source_need_reason,
            suggested_analysts=list(self._suggested_analysts),
            added=[s.id for s in self._added], integration=self._integration,
            outline=self._draft, feedback=dict(self._feedback),
            feedback_rounds=dict(self._feedback_rounds), outputs=dict(self._outputs),
            clarifications=self._clarifications, approved_outline=self._outline,
            citation_map=self._cmap)
        workflow.continue_as_new(self._req.model_copy(update={"carried": carry}))

    def _providers(self) -> str:
        return ", ".join(sorted({u.provider for u in self.ledger})) or "none"

    def _loaded(self) -> set[str]:
        return {s.id for s in self._registry}

    def _source_listing(self, levels: tuple[str, ...], excerpt: int) -> list[DocumentRef]:
        """The sources of ``levels`` as a prompt listing (``LlmRequest.documents``):
        ``[id] (level) title — location`` and the first ``excerpt`` characters of the
        text, which the LLM activity loads from the store (an inline text, of a web
        source or of a run started before texts went by reference, goes inline)."""
        return [DocumentRef(header=f"[{s.id}] ({s.level}) {s.title} — {s.location}",
                            ref=s.text_ref, text=s.text, chars=excerpt)
                for s in self._registry if s.level in levels]

    def _feedback_docs(self, gate: str, inline: list[str]) -> dict[str, list[DocumentRef]]:
        """The ``feedback`` variable of the proposal and outline prompts: every earlier
        round's comment as ``- `` lines, from the gate's feedback file (``inline``:
        the comments of a run started before feedback went by reference)."""
        if not self._by_ref:
            text = "\n".join(f"- {f}" for f in inline)
            return {"feedback": [DocumentRef(text=text)] if text else []}
        ref = self._feedback.get(gate)
        return {"feedback": [DocumentRef(ref=ref)] if ref else []}

    async def _add_feedback(self, gate: str, comment: str, inline: list[str]) -> None:
        """Keep one revise round's ``comment``: in the gate's feedback file (a new
        file per round: the earlier ones' lines and this one), so each round adds
        only its own comment and a reference to history; inline for older runs."""
        if not self._by_ref:
            inline.append(comment)
            return
        n = self._feedback_rounds.get(gate, 0) + 1
        self._feedback[gate] = await workflow.execute_activity_method(
            AnalysisActivities.record_feedback,
            FeedbackInput(workflow_id=workflow.info().workflow_id, gate=gate, round=n,
                          comment=comment, earlier=self._feedback.get(gate)),
            start_to_close_timeout=policies.ANALYSIS_IO_TIMEOUT,
            retry_policy=policies.ANALYSIS_IO_RETRY,
            summary=f"keep the {gate} feedback of round {n}")
        self._feedback_rounds[gate] = n

    async def _load(self, paths: list[str]) -> None:
        assert self._req
        first = sum(1 for s in self._registry if s.level == "L0") + 1
        docs = await workflow.execute_activity_method(
            AnalysisActivities.load_sources,
            LoadSourcesInput(paths=paths, first_number=first,
                             max_chars=self._req.max_source_chars,
                             workflow_id=workflow.info().workflow_id if self._by_ref else ""),
            start_to_close_timeout=policies.ANALYSIS_IO_TIMEOUT,
            retry_policy=policies.ANALYSIS_IO_RETRY,
            summary=f"load {len(paths)} source path(s)",
        )
        self._registry.extend(docs)
        self.record("sources_loaded", ", ".join(f"{d.id} {d.title}" for d in docs))

    # -- 1. parse -------------------------------------------------------------
    async def _score(self, clarifications: str) -> tuple[dict[str, float], str | None]:
        """Synthesizer scores and template by LLM; keyword scores when it fails."""
        assert self._req
        cat = self._req.catalogue
        try:
            resp = await self.call_llm(LlmRequest(
                phase="analysis_parse", template="analysis_parse.md",
                output_schema=checks.parse_schema(cat),
                variables={
                    "problem": self._req.problem, "clarifications": clarifications,
                    "synthesizers": "\n".join(
                        f"- {sid}: {s.name} — {s.description} (templates: "
                        f"{', '.join(s.templates)}; analysts: {', '.join(s.analysts)}; "
                        f"keywords: {', '.join(s.keywords)})"
                        for sid, s in cat.synthesizers.items()),
                    "analysts": "\n".join(f"- {aid}: {a.name} — {a.focus}"
                                           for aid, a in cat.analysts.items()),
                    "templates": "\n".join(f"- {tid}: {t.name}"
                                           for tid, t in cat.templates.items())},
                documents={"sources": self._source_listing(("L0",), 300)}),
                summary="score the synthesizers")
        except ActivityError as err:
            text = self._req.problem + "\n" + clarifications
            self.record("fallback", f"LLM scoring failed ({failure_message(err)}); "
                        "keyword scores used")
            self._state.scoring = "keywords"
            return checks.keyword_scores(text, cat), None
        assert resp.data is not None
        self._state.scoring = "llm"
        self._state.source_need = resp.data["source_need"]
        self._source_need_reason = resp.data["source_need_reason"]
        self._suggested_analysts = [str(a) for a in resp.data.get("analysts", [])
                                    if a in cat.analysts]
        return {k: float(v) for k, v in resp.data["scores"].items()}, resp.data["template"]

    def _apply_scores(self, scores: dict[str, float], template: str | None) -> None:
        assert self._req
        cat = self._req.catalogue
        self._state.scores = scores
        best = checks.ranked(scores)[0]
        synth = cat.synthesizers[best]
        self._state.synthesizer = best
        self._state.template = template if template in synth.templates else synth.templates[0]
        self._state.analysts = list(self._suggested_analysts or synth.analysts)
        self.record("scored", f"{self._state.scoring}: " + ", ".join(
            f"{s}={scores[s]:.2f}" for s in checks.ranked(scores))
            + f" -> {best}, template {self._state.template}, analysts "
            + ", ".join(self._state.analysts))

    async def _parse(self) -> None:
        assert self._req
        await self._enter(AnalysisPhase.PARSE)
        self._state.language = checks.detect_language(self._req.problem,
                                                      self._req.catalogue.language_markers)
        self._source_need_reason = "the scorer could not rate it"
        self._state.source_need = "MEDIUM"
        scores, template = await self._score(NONE)
        self._apply_scores(scores, template)

    # -- 2. fresh sources -------------------------------------------------------
    async def _sources_gate(self, resume: GateInfo | None = None) -> None:
        assert self._req
        if resume is None:
            await self.transition(AnalysisPhase.SOURCES, f"need {self._state.source_need}")
        while True:
            count = sum(1 for s in self._registry if s.level == "L0")
            review = ""
            if self._added:
                review = ("added for review: " + "; ".join(
                    f"{d.id} {d.title} ({d.location})" for d in self._added) + ". ")
            decision = await self._gate(SOURCES_GATE, (
                f"fresh sources: need {self._state.source_need} ({self._source_need_reason}); "
                f"{count} document(s) loaded, web search "
                f"{'on' if self._state.web_search else 'off'}. {review}Proceed with "
                "`analysis choose ID --proceed`, or "
                "`analysis choose ID --add-source PATH` / `--web-search`"), resume)
            resume = None
            if decision.verdict == Verdict.REJECT:
                await self.fail(f"stopped at the sources gate: {decision.comment}")
            choice = SourcesChoice.model_validate_json(decision.content or "{}")
            if choice.web_search:
                self._state.web_search = True
                self.record("web_search", "web search enabled", actor=decision.actor)
            if choice.add_sources:
                before = len(self._registry)
                try:
                    await self._load(choice.add_sources)
                except ActivityError as err:
                    if is_cancelled_exception(err):
                        raise
                    self.record("sources_refused", failure_message(err), actor=decision.actor)
                    continue
                if workflow.patched(SOURCES_REVIEW_PATCH):
                    self._added = self._registry[before:]  # the gate opens again to review
                    continue
            return

    # -- 3. clarify -------------------------------------------------------------
    async def _clarify(self, resume: GateInfo | None = None) -> None:
        assert self._req
        if self._again != AnalysisPhase.CLARIFY or self._clarifications is None:
            # (else the budget gate stopped the rescoring: only that is redone)
            if resume is None and not await self._ask():
                return
            questions = self._state.questions
            decision = await self._gate(CLARIFY_GATE, "answer: " + " | ".join(questions),
                                        resume)
            if decision.verdict == Verdict.REJECT:
                self.record("clarify_skipped", "clarification declined; scores kept",
                            actor=decision.actor)
                return
            answers = ClarifyAnswers.model_validate_json(decision.content or "{}").answers
            self._clarifications = "\n".join(
                f"Q: {q}\nA: {a}" for q, a in zip(questions + [""] * len(answers), answers,
                                                   strict=False))
        self._again = None
        scores, template = await self._score(self._clarifications)
        self._apply_scores(scores, template)

    async def _ask(self) -> bool:
        """Enter CLARIFY and write the clarifying questions (``state.questions``)
        when the top two scores are close; False (and nothing done) otherwise."""
        assert self._req
        scores = self._state.scores
        if not checks.needs_clarification(scores):
            return False
        cat = self._req.catalogue
        first, second = checks.ranked(scores)[:2]
        await self._enter(AnalysisPhase.CLARIFY, f"{first} {scores[first]:.2f} vs {second} "
                    f"{scores[second]:.2f}")
        try:
            resp = await self.call_llm(LlmRequest(
                phase="analysis_clarify", template="analysis_questions.md",
                output_schema=checks.QUESTIONS_SCHEMA,
                variables={"problem": self._req.problem, "candidates": "\n".join(
                    f"- {s}: {cat.synthesizers[s].name} — {cat.synthesizers[s].description}"
                    for s in (first, second))}),
                summary="clarifying questions")
            assert resp.data is not None
            questions = [str(q) for q in resp.data["questions"]]
        except ActivityError as err:
            self.record("fallback", f"question generation failed ({failure_message(err)})")
            questions = [f"Is this mainly about {cat.synthesizers[first].description}, or "
                         f"about {cat.synthesizers[second].description}?"]
        self._state.questions = questions
        return True

    # -- 4. propose -------------------------------------------------------------
    async def _propose(self, resume: GateInfo | None = None) -> None:
        assert self._req
        cat = self._req.catalogue
        if resume is None:
            await self._enter(AnalysisPhase.PROPOSE)
        feedback: list[str] = []  # runs started before feedback went by reference
        while True:
            st = self._state
            if resume is None:
                await self._write_proposal(feedback)
            decision = await self._gate(PROPOSAL_GATE, (
                f"synthesizer {st.synthesizer}, template {st.template}, analysts "
                f"{', '.join(st.analysts)}, web search {'on' if st.web_search else 'off'}: "
                "approve, or `analysis choose ID --synthesizer/--template/--analyst/"
                "--web-search`, or revise with feedback"), resume)
            resume = None
            if decision.verdict == Verdict.APPROVE:
                return
            if decision.verdict == Verdict.REJECT:
                await self.fail(f"proposal rejected: {decision.comment}")
            await self._add_feedback(PROPOSAL_GATE, decision.comment, feedback)
            if decision.content:
                change = ProposalChange.model_validate_json(decision.content)
                if change.synthesizer and change.synthesizer != st.synthesizer:
                    synth = cat.synthesizers[change.synthesizer]
                    st.synthesizer = change.synthesizer
                    st.template = synth.templates[0]
                    st.analysts = list(synth.analysts)
                st.template = change.template or st.template
                st.analysts = list(change.analysts or st.analysts)
                st.web_search = st.web_search if change.web_search is None \
                    else change.web_search
                self.record("proposal_changed", change.model_dump_json(exclude_none=True),
                            actor=decision.actor)

    async def _write_proposal(self, feedback: list[str]) -> None:
        """Write the proposal (``state.proposal``) for the current choices, with the
        reviewer's feedback so far."""
        assert self._req
        cat = self._req.catalogue
        st = self._state
        resp = await self.call_llm(LlmRequest(
            phase="analysis_proposal", template="analysis_proposal.md",
            output_schema=checks.PROPOSAL_SCHEMA,
            variables={"problem": self._req.problem, "synthesizer": st.synthesizer,
                       "synthesizer_name": cat.synthesizers[st.synthesizer].name,
                       "template": st.template,
                       "template_name": cat.templates[st.template].name,
                       "analysts": ", ".join(st.analysts),
                       "web_search": "on" if st.web_search else "off"},
            documents={"sources": self._source_listing(("L0",), 0),
                       **self._feedback_docs(PROPOSAL_GATE, feedback)}),
            summary="write the proposal")
        assert resp.data is not None
        st.proposal = f"{resp.data['summary']} Rationale: {resp.data['rationale']}"

    # -- 5. analysts --------------------------------------------------------------
    async def _analyst(self, aid: str) -> str | None:
        """Run one analyst (and redo it once with the error when its output is
        invalid); return None on success, else why it failed."""
        assert self._req
        cat = self._req.catalogue
        analyst = cat.analysts[aid]
        previous_error = NONE
        for _ in range(2):
            try:
                resp = await self.call_llm(LlmRequest(
                    phase="analysis_analyst", template="analysis_analyst.md",
                    variables={
                        "problem": self._req.problem, "analyst_id": aid,
                        "analyst_name": analyst.name, "analyst_focus": analyst.focus,
                        "analyst_reference": analyst.reference,
                        "analyst_reference_json": json.dumps(analyst.reference),
                        "source_ids": json.dumps([s.id for s in self._registry]),
                        "previous_error": previous_error},
                    documents={"sources": self._source_listing(("L0", "L2"),
                                                               self._req.max_source_chars)}),
                    summary=f"analyst {aid}")
            except ActivityError as err:
                return failure_message(err)
            output, problems = checks.validate_analyst_output(
                aid, resp.text, cat.analyst_frontmatter, self._loaded())
            if output is not None:
                self._outputs[aid] = output
                self._state.analysts_done.append(aid)
                self.record("analyst_done", f"{aid}: {len(output.body)} characters, "
                            f"sources {', '.join(output.sources) or '-'}")
                return None
            previous_error = "; ".join(problems)
            self.record("check_failed", f"analyst {aid} output invalid: {previous_error}")
        return f"output invalid: {previous_error}"

    async def _run_analysts(self) -> None:
        assert self._req
        # (a run that continued as new at the budget gate has some done already)
        analysts = [a for a in self._state.analysts if a not in self._outputs]
        await self._enter(AnalysisPhase.ANALYSTS, f"{len(analysts)} analyst(s), "
                    f"{self._req.analyst_concurrency} at a time")
        slots = asyncio.Semaphore(self._req.analyst_concurrency)

        async def one(aid: str) -> str | None:
            async with slots:
                return await self._analyst(aid)

        first: list[str | None] = []
        if len(analysts) > 1 and any(u.provider != "offline" for u in self.ledger) and \
                workflow.patched(CACHE_WARMUP_PATCH):
            first = [await one(analysts[0])]  # writes the source block to the cache
            self.record("cache_warmup", f"{analysts[0]} ran first; the other analysts "
                        "read the shared source block from the prompt cache")
        errors = first + list(await asyncio.gather(*(one(a) for a in analysts[len(first):])))
        failed = {a: e for a, e in zip(analysts, errors, strict=True) if e is not None}
        for aid in [a for a in analysts if a in failed]:
            for attempt in range(1, self._req.analyst_retries + 1):
                self.record("analyst_retry", f"{aid} failed ({failed[aid]}); retried alone, "
                            f"attempt {attempt}")
                error = await self._analyst(aid)
                if error is None:
                    del failed[aid]
                    break
                failed[aid] = error
        if failed:
            reasons = "; ".join(f"{a}: {e}" for a, e in failed.items())
            total = len(self._state.analysts)
            if len(failed) == total or (len(failed) >= 2
                                        and not self._req.graceful_degradation):
                await self.fail(f"{len(failed)} of {total} analysts failed "
                                 f"({reasons})")
            self._state.missing_analysts = list(failed)
            self.record("degraded", f"continuing without {', '.join(failed)} ({reasons})")
        # L1: the works the analysts cited, numbered in analyst order
        for aid in self._state.analysts:
            for ref in self._outputs[aid].references if aid in self._outputs else []:
                known = next((s for s in self._registry if s.level == "L1"
                              and s.location == ref), None)
                if known is None:
                    n = sum(1 for s in self._registry if s.level == "L1") + 1
                    self._registry.append(SourceDoc(id=f"L1-{n}", level="L1", title=ref,
                                                    location=ref, cited_by=[aid],
                                                    role="framework"))
                elif aid not in known.cited_by:
                    known.cited_by.append(aid)

    # -- 6. integrate -----------------------------------------------------------
    async def _integrate(self) -> str:
        assert self._req
        cat = self._req.catalogue
        await self._enter(AnalysisPhase.INTEGRATE)
        sections = "\n\n".join(
            f"### {cat.analysts[a].name} ({a})\n\n{self._outputs[a].body}"
            for a in self._state.analysts if a in self._outputs)
        resp = await self.call_llm(LlmRequest(
            phase="analysis_integrate", template="analysis_integrate.md", max_tokens=4096,
            variables={"problem": self._req.problem, "analyst_sections": sections,
                       "synthesizer_name": cat.synthesizers[self._state.synthesizer].name,
                       "missing": ", ".join(self._state.missing_analysts) or "none"}),
            summary="integrate the analysts")
        if not resp.text.strip():
            await self.fail("the integration step returned no text")
        return resp.text.strip()

    # -- 7. outline -------------------------------------------------------------
    async def _make_outline(self, integration: str, feedback: list[str]) -> Outline:
        assert self._req
        template = self._req.catalogue.templates[self._state.template]
        resp = await self.call_llm(LlmRequest(
            phase="analysis_outline", template="analysis_outline.md",
            output_schema=checks.OUTLINE_SCHEMA,
            variables={"problem": self._req.problem, "template_name": template.name,
                       "sections": ", ".join(template.sections), "integration": integration},
            documents=self._feedback_docs(OUTLINE_GATE, feedback)),
            summary="write the outline")
        assert resp.data is not None
        return Outline(title=resp.data["title"], points=[
            OutlinePoint(id=f"P{i}", heading=p["heading"], claim=p["claim"],
                         factual=bool(p["factual"]))
            for i, p in enumerate(resp.data["points"], 1)])

    async def _outline_phase(self, integration: str, resume: GateInfo | None = None) -> None:
        feedback: list[str] = []  # runs started before feedback went by reference
        if resume is None or self._draft is None:
            await self._enter(AnalysisPhase.OUTLINE)
            resume = None
            outline = await self._make_outline(integration, feedback)
        else:
            outline = self._draft
        while True:
            self._draft = outline
            self._state.outline = [f"{p.id} {p.heading}: {p.claim}"
                                   + ("" if p.factual else " (opinion)") for p in outline.points]
            decision = await self._gate(OUTLINE_GATE, (
                f"outline '{outline.title}' with {len(outline.points)} point(s): approve, or "
                "revise with feedback (--comment) or an edited outline (--content-file with "
                "'- Heading: claim' lines)"), resume)
            resume = None
            if decision.verdict == Verdict.APPROVE:
                if decision.content:  # approved as the reviewer edited it
                    outline = checks.parse_edited_outline(decision.content, outline.title)
                    self.record("outline_edited", f"{len(outline.points)} point(s) from the "
                                "reviewer, approved", actor=decision.actor)
                self._outline = outline
                return
            if decision.verdict == Verdict.REJECT:
                await self.fail(f"outline rejected: {decision.comment}")
            if decision.content:
                outline = checks.parse_edited_outline(decision.content, outline.title)
                self.record("outline_edited", f"{len(outline.points)} point(s) from the "
                            "reviewer", actor=decision.actor)
            else:
                await self._add_feedback(OUTLINE_GATE, decision.comment, feedback)
                outline = await self._make_outline(integration, feedback)

    # -- 8./9. citations -----------------------------------------------------------
    async def _web_search(self, point: OutlinePoint) -> list[str]:
        """One counted L2 search for ``point``; the ids of the sources it fetched, or
        [] when the run's search limit is used up (the search is refused)."""
        assert self._req
        if self._state.searches_used >= self._req.max_web_searches:
            self.record("search_refused", f"web search for {point.id} refused: the "
                        f"limit of {self._req.max_web_searches} searches per run is used")
            return []
        self._state.searches_used += 1
        try:
            results = await workflow.execute_activity_method(
                WebSearchActivities.web_search,
                WebSearchInput(query=f"{point.heading}: {point.claim}"[:300], num_results=3),
                start_to_close_timeout=policies.WEB_SEARCH_TIMEOUT,
                retry_policy=policies.WEB_SEARCH_RETRY,
                summary=f"web search {self._state.searches_used} for {point.id}")
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            self.record("search_failed", f"{point.id}: {failure_message(err)}")
            return []
        ids = []
        for r in results:
            known = next((s for s in self._registry if s.location == r.url), None)
            if known is None:
                n = sum(1 for s in self._registry if s.level == "L2") + 1
                known = SourceDoc(id=f"L2-{n}", level="L2", title=r.title, location=r.url,
                                  text=r.text)
                self._registry.append(known)
            ids.append(known.id)
        self.record("searched", f"{point.id}: {', '.join(ids) or 'no results'} "
                    f"(search {self._state.searches_used} of {self._req.max_web_searches})")
        return ids

    async def _map_citations(self, previous_error: str) -> CitationMap:
        assert self._outline and self._req
        points = self._outline.points
        resp = await self.call_llm(LlmRequest(
            phase="analysis_citations", template="analysis_citations.md",
            output_schema=checks.citation_schema([p.id for p in points],
                                                 [s.id for s in self._registry]),
            variables={"outline": "\n".join(f"{p.id} [{'factual' if p.factual else 'opinion'}]"
                                            f" {p.heading}: {p.claim}" for p in points),
                       "previous_error": previous_error},
            documents={"sources": self._source_listing(("L0", "L1", "L2"),
                                                       self._req.max_source_chars)}),
            summary="map sources to the outline")
        assert resp.data is not None
        citations = {k: list(dict.fromkeys(str(i) for i in v))
                     for k, v in resp.data["citations"].items()}
        gaps = [p for p in points if p.factual and not citations.get(p.id)]
        if gaps:
            self.record("gaps", f"no source for {', '.join(p.id for p in gaps)}")
        if gaps and self._state.web_search:
            for point in gaps:
                citations[point.id] = (await self._web_search(point))[:2]
        return CitationMap(
            citations=citations,
            gaps=[p.id for p in points if p.factual and not citations.get(p.id)],
            sources=list(self._registry), provider=self._providers())

    async def _citations(self) -> CitationMap:
        assert self._outline
        await self._enter(AnalysisPhase.CITATIONS)
        previous_error = NONE
        for attempt in range(2):
            cmap = await self._map_citations(previous_error)
            problems = checks.validate_citation_map(cmap, self._outline, self._loaded())
            if not problems and workflow.patched(CITATION_SUPPORT_PATCH):
                unsupported = await self._unsupported_map(cmap)
                if unsupported and attempt == 0:
                    problems = [f"{pid} cites {', '.join(ids)}, whose text does not support "
                                "its claim (frameworks (L1) cannot be the only support)"
                                for pid, ids in unsupported.items()]
                elif unsupported:
                    self._drop_unsupported(cmap, unsupported)
            if not problems:
                count = sum(map(len, cmap.citations.values()))
                self.record("check_passed", f"citation map: {count} citation(s), gaps: "
                            f"{', '.join(cmap.gaps) or 'none'}")
                return cmap
            previous_error = "; ".join(problems)
            self.record("check_failed", f"citation map: {previous_error}")
        await self.fail(f"the citation map failed validation twice: {previous_error}")

    def _judging(self) -> bool:
        """Whether flagged citations go to a model judge: only in runs that use a model
        (offline the lexical check is final)."""
        return not all(u.provider == "offline" for u in self.ledger) and \
            workflow.patched(CITATION_JUDGE_PATCH)

    async def _check_support(self, **check: object) -> list[SupportGroup]:
        """The ``check_citation_support`` activity over this run's sources (``check``:
        the SupportCheckInput fields naming what to check)."""
        result = await workflow.execute_activity_method(
            AnalysisActivities.check_citation_support,
            SupportCheckInput(workflow_id=workflow.info().workflow_id,
                              sources=list(self._registry), judge=self._judging(),
                              **check),  # type: ignore[arg-type]
            start_to_close_timeout=policies.ANALYSIS_IO_TIMEOUT,
            retry_policy=policies.ANALYSIS_IO_RETRY,
            summary="check that cited sources support what cites them")
        return result.groups

    async def _unsupported_map(self, cmap: CitationMap) -> dict[str, list[str]]:
        """Outline point id -> the ids its citation-map entry cites without support
        (after the judge, when there is one)."""
        assert self._outline
        if self._by_ref:
            if not any(cmap.citations.values()):
                return {}
            groups = await self._check_support(points=self._outline.points,
                                               citations=cmap.citations)
            return {f.point: f.ids for f in await self._judge_group(groups[0])}
        unsupported = unsupported_map_citations(cmap.citations, self._outline.points,
                                                self._registry)
        claims = {p.id: p.claim for p in self._outline.points}
        kept = await self._judge([(claims[pid], ids) for pid, ids in unsupported.items()],
                                 "the citation map")
        return {pid: ids for pid, ids in unsupported.items() if (claims[pid], ids) in kept}

    async def _unsupported_report(self, body: str) -> list[tuple[str, list[str]]]:
        """(sentence, ids) of the report's citations that do not support their
        sentence, checked per section (after the judge, when there is one)."""
        if self._by_ref:
            found: list[tuple[str, list[str]]] = []
            for group in await self._check_support(body=body):
                found += [(f.text, f.ids) for f in await self._judge_group(group)]
            return found
        found = []
        for section in sections(body):
            flagged = unsupported_report_citations(section, self._registry)
            found += await self._judge(flagged, f"section '{section.splitlines()[0][:60]}'")
        return found

    async def _mark(self, body: str, found: list[tuple[str, list[str]]]) -> str:
        """``body`` with the ``found`` citations marked as unsupported."""
        if not self._by_ref:
            return mark_unsupported(body, found)
        return await workflow.execute_activity_method(
            AnalysisActivities.mark_unsupported_citations,
            MarkUnsupportedInput(body=body, found=[FlaggedCitation(text=t, ids=ids)
                                                   for t, ids in found]),
            start_to_close_timeout=policies.ANALYSIS_IO_TIMEOUT,
            retry_policy=policies.ANALYSIS_IO_RETRY,
            summary="mark the unsupported citations of the report")

    async def _judge_group(self, group: SupportGroup) -> list[FlaggedCitation]:
        """Of one group's flagged citations, those the judge finds unsupported too
        (all of them when there is no judge); the judge reads the claims and passages
        the check wrote to the store."""
        if not group.found or group.judge_claims is None or group.judge_claims_json is None:
            return group.found
        verdicts = await self._judge_call(len(group.found), group.what, documents={
            "claims": [DocumentRef(ref=group.judge_claims)],
            "claims_json": [DocumentRef(ref=group.judge_claims_json)]})
        return group.found if verdicts is None else checks.judged(group.found, verdicts)

    async def _judge(self, found: list[tuple[str, list[str]]], what: str
                     ) -> list[tuple[str, list[str]]]:
        """Of the citations the lexical check found unsupported (claim, ids), those a
        model judge finds unsupported too, for a run that keeps source texts inline
        (started before they went by reference). Only in runs that use a model: one
        judge call per batch, priced in the ledger; a failed call leaves the lexical
        verdict."""
        if not found or not self._judging():
            return found
        claims, claims_json = judge_claims(found, self._registry)
        verdicts = await self._judge_call(len(found), what, variables={
            "claims": claims, "claims_json": claims_json})
        return found if verdicts is None else checks.judged(found, verdicts)

    async def _judge_call(self, n: int, what: str, **prompt: dict) -> list[dict] | None:
        """One judge call on ``n`` flagged citations of ``what`` (``prompt``: the
        request's variables or documents); its verdicts, or None when it failed (the
        lexical check stands)."""
        try:
            resp = await self.call_llm(LlmRequest(
                phase="analysis_citation_judge", template="analysis_citation_judge.md",
                output_schema=checks.JUDGE_SCHEMA, **prompt),  # type: ignore[arg-type]
                summary=f"judge {n} citation(s) of {what}")
        except ActivityError as err:
            self.record("fallback", f"citation judge failed ({failure_message(err)}); the "
                        "lexical check stands")
            return None
        assert resp.data is not None
        verdicts = resp.data["verdicts"]
        kept = len(checks.judged(list(range(n)), verdicts))
        self.record("citations_judged", f"{what}: {n - kept} of {n} "
                    "flagged citation(s) judged supported")
        return verdicts

    def _drop_unsupported(self, cmap: CitationMap, unsupported: dict[str, list[str]]) -> None:
        """Take citations that stayed unsupported after the redo out of ``cmap`` (kept
        in ``cmap.unsupported``); a factual point left without any becomes a gap."""
        assert self._outline
        for pid, ids in unsupported.items():
            cmap.citations[pid] = [i for i in cmap.citations[pid] if i not in ids]
        cmap.unsupported = unsupported
        cmap.gaps = [p.id for p in self._outline.points
                     if p.factual and not cmap.citations.get(p.id)]
        self.record("citations_unsupported", "; ".join(
            f"{pid}: {', '.join(ids)}" for pid, ids in unsupported.items())
            + " (dropped after one redo)")

    # -- 10./11. full text ------------------------------------------------------------
    async def _full_text(self, cmap: CitationMap, integration: str) -> str:
        assert self._req and self._outline
        await self._enter(AnalysisPhase.FULL_TEXT)
        draft = "\n\n".join(
            f"## {p.heading}\n\n{p.claim}"
            + (f" [{'; '.join(cmap.citations[p.id])}]" if cmap.citations.get(p.id) else "")
            for p in self._outline.points)
        cited = list(dict.fromkeys(s for ids in cmap.citations.values() for s in ids))
        st = self._state
        evidence = bool(cited) or not workflow.patched(NO_EVIDENCE_PATCH)
        if not evidence:
            self.record("no_evidence", "no source supports any point of the outline; the "
                        "report is written without citations")
        previous_error = NONE
        for attempt in range(2):
            resp = await self.call_llm(LlmRequest(
                phase="analysis_full_text", template="analysis_full_text.md", max_tokens=8192,
                variables={"title": self._outline.title,
                           "title_json": json.dumps(self._outline.title),
                           "date": workflow.now().date().isoformat(),
                           "synthesizer": st.synthesizer, "template": st.template,
                           "language": st.language, "source_ids": json.dumps(cited),
                           "draft": draft, "integration": integration,
                           "previous_error": previous_error}),
                summary="write the full text")
            text = checks.remove_source_markers(resp.text)
            meta, body, problems = checks.validate_report(
                text, self._req.catalogue.report_frontmatter, self._loaded(), evidence)
            supported = not problems and workflow.patched(CITATION_SUPPORT_PATCH)
            if supported:
                found = await self._unsupported_report(body)
                if found and attempt == 0:
                    problems = checks.support_problems(found)
                elif found:
                    body = await self._mark(body, found)
                    meta["unsupported_citations"] = [
                        f"{', '.join(ids)}: {sentence[:120]}" for sentence, ids in found]
                    self.record("citations_unsupported", f"{len(found)} sentence(s) of the "
                                "report marked as citing sources that do not support them")
            if not problems:
                meta["provider"] = self._providers()
                if supported:
                    meta["sources"] = list(dict.fromkeys(checks.inline_citations(body)))
                    meta["uncited_sources"] = checks.uncited_sources(body, self._registry)
                    meta["frameworks"] = [f"{s.id}: {s.title}" for s in self._registry
                                          if s.role == "framework"]
                self.record("check_passed", f"report frontmatter and "
                            f"{len(checks.inline_citations(body))} inline citation(s)")
                return checks.render_report(meta, body)
            previous_error = "; ".join(problems)
            self.record("check_failed", f"full text: {previous_error}")
        await self.fail(f"the full text failed validation twice: {previous_error}")
