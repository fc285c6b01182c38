"""Models of the strategic analysis pipeline (seed 004): problem -> sources -> clarify
-> proposal -> parallel analysts -> integrate -> outline -> citations -> full text."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from models.common import ArtifactRef, AuditEntry, GateInfo
from models.llm import LlmUsage

SOURCES_GATE = "sources"
CLARIFY_GATE = "clarify"
PROPOSAL_GATE = "proposal"
OUTLINE_GATE = "outline"


class AnalysisPhase(StrEnum):
    """Where an analysis is (the seed's steps, plus the start and terminal states)."""

    STARTED = "STARTED"
    PARSE = "PARSE"
    SOURCES = "SOURCES"
    CLARIFY = "CLARIFY"
    PROPOSE = "PROPOSE"
    ANALYSTS = "ANALYSTS"
    INTEGRATE = "INTEGRATE"
    OUTLINE = "OUTLINE"
    CITATIONS = "CITATIONS"
    FULL_TEXT = "FULL_TEXT"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class SourceNeed(StrEnum):
    """How much the problem needs fresh sources."""

    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


# -- the catalogue (catalogue/analysis.yaml) -----------------------------------
class Synthesizer(BaseModel):
    """A way of synthesizing analysts into a report.

    Attributes:
        name: display name; description: what it is for.
        keywords: words of a problem that suggest it (the keyword fallback scorer).
        templates: report templates it can use, the first is its default.
        analysts: the analysts it runs by default.
    """

    name: str
    description: str = ""
    keywords: list[str] = Field(default_factory=list)
    templates: list[str] = Field(min_length=1)
    analysts: list[str] = Field(min_length=1)


class ReportTemplate(BaseModel):
    """A report shape: its sections, in order."""

    name: str
    sections: list[str] = Field(min_length=1)


class Analyst(BaseModel):
    """One analyst: its lens on the problem and the framework it grounds it in."""

    name: str
    focus: str
    reference: str = ""


class Catalogue(BaseModel):
    """Synthesizers, templates, analysts and the frontmatter every analyst output and
    the report must carry.

    Attributes:
        analyst_frontmatter: fields every analyst output's YAML frontmatter needs.
        report_frontmatter: report frontmatter field -> JSON-schema type
            (``string``, ``array``, ...).
        language_markers: language code -> common words that identify it.
    """

    synthesizers: dict[str, Synthesizer] = Field(min_length=1)
    templates: dict[str, ReportTemplate] = Field(min_length=1)
    analysts: dict[str, Analyst] = Field(min_length=1)
    analyst_frontmatter: list[str] = Field(
        default_factory=lambda: ["analyst", "confidence", "sources"])
    report_frontmatter: dict[str, str] = Field(default_factory=lambda: {
        "title": "string", "date": "string", "synthesizer": "string", "template": "string",
        "language": "string", "provider": "string", "sources": "array"})
    language_markers: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_refs(self) -> Catalogue:
        for sid, synth in self.synthesizers.items():
            for t in synth.templates:
                if t not in self.templates:
                    raise ValueError(f"synthesizer {sid!r} names unknown template {t!r}")
            for a in synth.analysts:
                if a not in self.analysts:
                    raise ValueError(f"synthesizer {sid!r} names unknown analyst {a!r}")
        return self


# -- input, sources, intermediate results ---------------------------------------
class AnalysisRequest(BaseModel):
    """Input of AnalysisWorkflow.

    Attributes:
        problem: the problem statement (text).
        title: a short name of the problem (the workflow ID's slug comes from it).
        sources: absolute paths of L0 source documents (markdown/text files or
            directories of them) to load first.
        catalogue: synthesizers, templates and analysts (from catalogue/analysis.yaml).
        analyst_concurrency: analysts that run at once.
        analyst_retries: extra attempts of a failed analyst, each run alone.
        graceful_degradation: with 2 or more failed analysts, go on with the rest
            (and record what is missing) instead of aborting.
        web_search_available: the worker has web search (EXA_API_KEY).
        web_search: web search (L2) enabled from the start.
        max_web_searches: searches allowed per run.
        max_source_chars: characters of each source given to the LLM.
        budget_usd: the LLM budget (None = unlimited).
        reminder_interval, gate_expiry: of every gate (expiry None = never).
        history_budget: history events after which a run waiting at the sources,
            clarify, proposal, outline or budget gate continues as new (or sooner,
            when Temporal suggests it; workflows.gates.history_full).
        carried: set by the workflow itself when it continues as new at a gate (its
            state, audit, ledger, sources and the open gate); None when a user
            starts the run.
    """

    problem: str = Field(min_length=1)
    title: str = Field(min_length=1)
    sources: list[str] = Field(default_factory=list)
    catalogue: Catalogue
    analyst_concurrency: int = Field(default=5, ge=1)
    analyst_retries: int = Field(default=1, ge=0)
    graceful_degradation: bool = False
    web_search_available: bool = False
    web_search: bool = False
    max_web_searches: int = Field(default=3, ge=0)
    max_source_chars: int = Field(default=6000, gt=0)
    budget_usd: float | None = None
    reminder_interval: timedelta = timedelta(hours=24)
    gate_expiry: timedelta | None = None
    history_budget: int = Field(default=5_000, ge=100)
    carried: AnalysisCarry | None = None


class SourceDoc(BaseModel):
    """A source the report may cite.

    Attributes:
        id: ``L0-n`` (user document), ``L1-n`` (cited by an analyst) or ``L2-n`` (web).
        level: ``L0``, ``L1`` or ``L2``.
        title: its title (first heading, file name, page title or the citation).
        location: file path, URL or the analyst's citation text.
        text: its text inline, truncated to ``max_source_chars``: a web excerpt (L2,
            public), or an L0 document of a run started before source texts went by
            reference; empty for L1 and for L0 documents passed by ``text_ref``.
        text_ref: the L0 document's text (truncated to ``max_source_chars``) in the
            artifact store; activities that need it load it, so it is never in
            workflow history.
        sha256: hex SHA-256 of the full file (L0 only).
        cited_by: analysts that cited it (L1).
        role: ``evidence`` (L0, L2: its text can support a claim) or ``framework``
            (L1, a catalogue reference work: a lens, never evidence; it cannot be
            the only support of a factual claim).
    """

    id: str
    level: str
    title: str
    location: str
    text: str = ""
    text_ref: ArtifactRef | None = None
    sha256: str = ""
    cited_by: list[str] = Field(default_factory=list)
    role: str = "evidence"


class LoadSourcesInput(BaseModel):
    """Activity input: load files or directories of markdown/text as L0 sources,
    numbered from ``first_number``; text kept up to ``max_chars`` characters; a
    file over ``max_bytes`` bytes is refused. With ``workflow_id`` the texts are
    written to the artifact store (``analysis/<workflow_id>/sources/<id>.txt``) and
    returned as ``SourceDoc.text_ref``; without it (runs started before that) they
    are returned inline."""

    paths: list[str]
    first_number: int = Field(default=1, ge=1)
    max_chars: int = Field(default=6000, gt=0)
    max_bytes: int = Field(default=1_000_000, gt=0)
    workflow_id: str = ""


class FlaggedCitation(BaseModel):
    """A claim (an outline point's claim, or a sentence of the report) with the ids
    it cites whose text does not support it; ``point`` is the outline point's id."""

    text: str
    ids: list[str]
    point: str = ""


class SupportGroup(BaseModel):
    """The unsupported citations of one part checked (the citation map, or one
    section of the report), and, when a judge was asked for, the judge's view of
    them (numbered claims with the best passage of each cited source, as text and
    as JSON) in the artifact store."""

    what: str
    found: list[FlaggedCitation] = Field(default_factory=list)
    judge_claims: ArtifactRef | None = None
    judge_claims_json: ArtifactRef | None = None


class SupportCheckInput(BaseModel):
    """Activity input: check whether cited sources support what cites them.

    Attributes:
        workflow_id: the run (judge files go under ``analysis/<workflow_id>/judge``).
        sources: the run's sources (texts inline or by reference).
        points: with ``citations``: check the citation map against the outline.
        citations: outline point id -> cited source ids.
        body: else: check each ``## `` section of this report body.
        judge: also write each group's claims for a model judge (see SupportGroup).
    """

    workflow_id: str
    sources: list[SourceDoc]
    points: list[OutlinePoint] = Field(default_factory=list)
    citations: dict[str, list[str]] = Field(default_factory=dict)
    body: str = ""
    judge: bool = False


class SupportCheck(BaseModel):
    """What the citation-support check found: one group for the citation map, or
    one per report section (text before the first section included)."""

    groups: list[SupportGroup] = Field(default_factory=list)


class MarkUnsupportedInput(BaseModel):
    """Activity input: mark the unsupported citations ``found`` in a report body."""

    body: str
    found: list[FlaggedCitation]


class FeedbackInput(BaseModel):
    """Activity input: add one round's reviewer feedback to a gate's feedback file.

    Attributes:
        workflow_id, gate: whose feedback (``analysis/<workflow_id>/feedback/``).
        round: the round's number at this gate (1, 2, ...), which names the file.
        comment: the new feedback (at most ``MAX_GATE_TEXT_BYTES``, as every
            gate comment).
        earlier: the file holding the earlier rounds' feedback, or None.
    """

    workflow_id: str
    gate: str
    round: int = Field(ge=1)
    comment: str
    earlier: ArtifactRef | None = None


class WebSearchInput(BaseModel):
    """Activity input: one web search."""

    query: str = Field(min_length=1)
    num_results: int = Field(default=3, ge=1, le=10)


class WebResult(BaseModel):
    """One web search hit: URL, title and a text excerpt."""

    url: str
    title: str = ""
    text: str = ""


class AnalystOutput(BaseModel):
    """A validated analyst output.

    Attributes:
        analyst: the analyst's catalogue id.
        frontmatter: its YAML frontmatter.
        body: its markdown body (non-empty).
        sources: the loaded sources it used (frontmatter ``sources``).
        references: other works it cited (frontmatter ``references``): L1 sources.
    """

    analyst: str
    frontmatter: dict[str, Any]
    body: str
    sources: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)


class OutlinePoint(BaseModel):
    """One point of the outline: ``id`` P1..Pn, a heading, the claim, and whether the
    claim is factual (needs a citation)."""

    id: str
    heading: str
    claim: str
    factual: bool = True


class Outline(BaseModel):
    """The report outline."""

    title: str
    points: list[OutlinePoint] = Field(min_length=1)


class CitationMap(BaseModel):
    """Which sources support which outline points.

    Attributes:
        citations: outline point id -> source ids, in outline order.
        gaps: factual points no source supports.
        unsupported: outline point id -> cited ids whose text did not support the
            claim after the one redo (they are dropped from ``citations``).
        sources: every source the map may cite (loaded or fetched).
        provider: the LLM provider(s) that made it.
    """

    citations: dict[str, list[str]] = Field(default_factory=dict)
    gaps: list[str] = Field(default_factory=list)
    unsupported: dict[str, list[str]] = Field(default_factory=dict)
    sources: list[SourceDoc] = Field(default_factory=list)
    provider: str = ""


class ProposalChange(BaseModel):
    """What a ``revise`` at the proposal gate may change (its ``content``, as JSON);
    unset fields stay."""

    synthesizer: str | None = None
    template: str | None = None
    analysts: list[str] | None = None
    web_search: bool | None = None


class SourcesChoice(BaseModel):
    """What an approve at the sources gate may carry (its ``content``, as JSON):
    documents to add (absolute paths) and whether to enable web search."""

    add_sources: list[str] = Field(default_factory=list)
    web_search: bool = False


class ClarifyAnswers(BaseModel):
    """The answers at the clarify gate (its ``content``, as JSON)."""

    answers: list[str] = Field(min_length=1)


class WriteReportInput(BaseModel):
    """Activity input: write the report and its citation map to the artifact store."""

    workflow_id: str
    report_markdown: str
    citation_map: CitationMap


class ReportArtifacts(BaseModel):
    """The report (markdown) and its citation map (JSON), by reference."""

    report: ArtifactRef
    citation_map: ArtifactRef


class AnalysisState(BaseModel):
    """What the ``state`` query of AnalysisWorkflow returns."""

    phase: AnalysisPhase = AnalysisPhase.STARTED
    language: str = ""
    scores: dict[str, float] = Field(default_factory=dict)
    scoring: str = ""
    synthesizer: str = ""
    template: str = ""
    analysts: list[str] = Field(default_factory=list)
    web_search: bool = False
    source_need: str = ""
    sources: list[str] = Field(default_factory=list)
    questions: list[str] = Field(default_factory=list)
    proposal: str = ""
    analysts_done: list[str] = Field(default_factory=list)
    missing_analysts: list[str] = Field(default_factory=list)
    outline: list[str] = Field(default_factory=list)
    searches_used: int = 0
    llm: str = ""
    failure_reason: str | None = None
    pending_gates: list[GateInfo] = Field(default_factory=list)


class AnalysisResult(BaseModel):
    """What AnalysisWorkflow returns."""

    phase: AnalysisPhase
    report: ArtifactRef
    citation_map: ArtifactRef
    synthesizer: str
    template: str
    analysts: list[str]
    missing_analysts: list[str] = Field(default_factory=list)
    provider: str
    llm_cost_usd: float
    audit: list[AuditEntry] = Field(default_factory=list)


CARRIED_COMMENT_CHARS = 500
"""Characters of each audit entry's comment an analysis carries over continue-as-new
(longer ones become an excerpt that gives the full length): the next run's input
stays small however many rounds were revised; the full revise comments are in the
feedback files."""


class AnalysisCarry(BaseModel):
    """What an AnalysisWorkflow run waiting at a gate carries over continue-as-new.

    Attributes:
        state: the run's state; its ``phase`` says where the next run resumes: at
            the SOURCES, CLARIFY, PROPOSE or OUTLINE gate, or, when ``gate`` is the
            budget gate, in the phase whose LLM call waited there (PARSE to
            FULL_TEXT): the next run waits at the budget gate first, then redoes
            that phase's step (in ANALYSTS only the analysts not done yet; in
            CLARIFY, after the questions were answered, only the rescoring).
        gate: the open gate, reopened as it was (opened_at, expiry, reminders).
        audit: the audit log so far (every transition and decision), each comment
            cut to CARRIED_COMMENT_CHARS.
        ledger: the LLM usage so far; budget_usd: the budget, as raised at the
            budget gate.
        registry: the sources loaded so far (texts by reference).
        source_need_reason, suggested_analysts: what the scorer said.
        added: ids of the sources added at the sources gate, listed for review.
        integration: the integrated analysts' text (at the outline gate).
        outline: the outline the outline gate reviews.
        feedback: gate -> its feedback file; feedback_rounds: gate -> revise rounds.
        outputs: the analysts' outputs so far (analyst id -> output).
        clarifications: the answered clarifying questions (``Q: ...`` / ``A: ...``
            lines), None before they are answered.
        approved_outline: the outline as approved (CITATIONS, FULL_TEXT).
        citation_map: the validated citation map (FULL_TEXT).
    """

    state: AnalysisState
    gate: GateInfo
    audit: list[AuditEntry] = Field(default_factory=list)
    ledger: list[LlmUsage] = Field(default_factory=list)
    budget_usd: float | None = None
    registry: list[SourceDoc] = Field(default_factory=list)
    source_need_reason: str = ""
    suggested_analysts: list[str] = Field(default_factory=list)
    added: list[str] = Field(default_factory=list)
    integration: str = ""
    outline: Outline | None = None
    feedback: dict[str, ArtifactRef] = Field(default_factory=dict)
    feedback_rounds: dict[str, int] = Field(default_factory=dict)
    outputs: dict[str, AnalystOutput] = Field(default_factory=dict)
    clarifications: str | None = None
    approved_outline: Outline | None = None
    citation_map: CitationMap | None = None


AnalysisRequest.model_rebuild()
