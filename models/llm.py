"""Models of the LLM layer: one request, its response, its usage and the cost ledger."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from models.common import ArtifactRef


class DocumentRef(BaseModel):
    """One document of a prompt listing whose text stays out of workflow history.

    Attributes:
        header: the line that introduces it (e.g. ``[L0-1] (L0) Title — path``).
        ref: its text in the artifact store (UTF-8), loaded by the activity; None
            when ``text`` is given inline (short, public text such as a web excerpt).
        text: inline text, used when ``ref`` is None.
        chars: characters of the text shown after the header (0: the header only;
            None: the whole text).
    """

    header: str = ""
    ref: ArtifactRef | None = None
    text: str = ""
    chars: int | None = Field(default=None, ge=0)


class LlmRequest(BaseModel):
    """Input of the ``llm_complete`` activity.

    Attributes:
        phase: the workflow phase the call belongs to (``analysis_parse``, ...); picks
            the model (``LLM_PHASE_MODELS``) and groups the ledger.
        template: file name of the prompt template under ``prompts/``.
        variables: values substituted into the template's ``{name}`` fields.
        output_schema: a JSON schema; when set, the answer is structured output (an
            Anthropic tool call with this input schema), validated against the schema
            and returned in ``LlmResponse.data``.
        max_tokens: the most output tokens the model may write.
        documents: variables rendered by the activity from documents passed by
            reference (source texts, earlier reviewer feedback), so their text is
            never in the request's payload: each document is its header, then the
            first ``chars`` characters of its text on the next line (trailing space
            stripped); documents are separated by a blank line; an empty list
            renders as ``(none)``. A name here overrides the same name in
            ``variables``.
    """

    phase: str = Field(min_length=1)
    template: str = Field(min_length=1)
    variables: dict[str, Any] = Field(default_factory=dict)
    documents: dict[str, list[DocumentRef]] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    max_tokens: int = Field(default=2048, gt=0)


class LlmUsage(BaseModel):
    """What one LLM call used, as the ledger records it.

    Attributes:
        provider: ``anthropic`` or ``offline``.
        model: the model that answered.
        input_tokens, output_tokens: tokens billed (summed over re-asks).
        cache_creation_input_tokens, cache_read_input_tokens: prompt-cache tokens.
        latency_ms: wall time of the call inside the activity, in milliseconds.
        cost_usd: cost in US dollars from the price table (``LLM_PRICES``).
        template_sha256: hex SHA-256 of the prompt template file's bytes.
        phase: the request's phase.
        attempts: model calls made (1 + re-asks after invalid structured output).
    """

    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    template_sha256: str = ""
    phase: str = ""
    attempts: int = 1


class LlmResponse(BaseModel):
    """Output of the ``llm_complete`` activity.

    Attributes:
        text: the answer's text (for structured output: the JSON of ``data``).
        data: the validated structured output, when the request had a schema.
        usage: what the call used.
    """

    text: str
    data: dict[str, Any] | None = None
    usage: LlmUsage


class LlmArtifactRef(ArtifactRef):
    """An artifact (e.g. an agent's spec) with the LLM usage spent making it, which the
    workflow appends to its ledger; ``usage`` is None when no LLM was called."""

    usage: LlmUsage | None = None


class ModelPrice(BaseModel):
    """Prices of one model in US dollars per million tokens (Anthropic's price list:
    input, output, prompt-cache write and prompt-cache read)."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float = Field(default=0.0, ge=0)
    cache_read: float = Field(default=0.0, ge=0)

    def cost(self, usage: LlmUsage) -> float:
        """Cost in USD of ``usage``: sum of tokens x price / 1e6 per token kind."""
        return (usage.input_tokens * self.input + usage.output_tokens * self.output
                + usage.cache_creation_input_tokens * self.cache_write
                + usage.cache_read_input_tokens * self.cache_read) / 1_000_000


class PhaseCost(BaseModel):
    """The ledger summed over one phase: calls, tokens (input, output, prompt-cache
    writes and reads, each priced at its own rate) and USD."""

    phase: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0


class LlmLedger(BaseModel):
    """What the ``llm_ledger`` query returns.

    Attributes:
        entries: every call's usage, oldest first.
        by_phase: the entries summed per phase, in order of first use.
        total_usd: cost of every call so far.
        budget_usd: the budget; None = unlimited. At or over it the workflow waits
            at the ``budget`` gate before its next call.
    """

    entries: list[LlmUsage] = Field(default_factory=list)
    by_phase: list[PhaseCost] = Field(default_factory=list)
    total_usd: float = 0.0
    budget_usd: float | None = None

    @classmethod
    def of(cls, entries: list[LlmUsage], budget_usd: float | None) -> LlmLedger:
        """The ledger of ``entries`` with per-phase sums."""
        phases: dict[str, PhaseCost] = {}
        for e in entries:
            p = phases.setdefault(e.phase, PhaseCost(phase=e.phase))
            p.calls += 1
            p.input_tokens += e.input_tokens
            p.output_tokens += e.output_tokens
            p.cache_write_tokens += e.cache_creation_input_tokens
            p.cache_read_tokens += e.cache_read_input_tokens
            p.cost_usd += e.cost_usd
        return cls(entries=list(entries), by_phase=list(phases.values()),
                   total_usd=sum(e.cost_usd for e in entries), budget_usd=budget_usd)


def model_price(prices: dict[str, ModelPrice], model: str) -> ModelPrice | None:
    """The price of ``model``: its exact entry, else the longest entry that is a prefix
    of it (``claude-sonnet-4-5`` prices ``claude-sonnet-4-5-20250929``); None if none."""
    if model in prices:
        return prices[model]
    keys = sorted((k for k in prices if model.startswith(k)), key=len, reverse=True)
    return prices[keys[0]] if keys else None
