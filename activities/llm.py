"""The LLM layer: the ``llm_complete`` activity and its providers.

* :class:`AnthropicProvider`: the Messages API through ``AsyncAnthropic`` with the
  SDK's own retries off (Temporal retries). Structured output is a forced tool
  call whose ``input_schema`` is the request's JSON schema; the tool input is
  validated with ``jsonschema`` and, when invalid, the model is asked again with
  the validation error (a ``tool_result`` with ``is_error``), up to
  ``LLM_VALIDATION_RETRIES`` times.
* :class:`OfflineProvider`: no model; deterministic, grounded output: the
  template's offline counterpart in :data:`activities.offline_answers.OFFLINE_ANSWERS`
  (extractive answers built from the request's variables: passages of the loaded
  sources, the problem, the catalogue), else the template's ``offline``
  front-matter field rendered with the variables (YAML data for a structured
  request). A template with neither is refused (``OfflineAnswerMissing``), so no
  phase falls back to filler text. Usage says ``provider: offline``; its cost is
  what LLM_MODEL would have charged for the same token counts (so budgets behave
  the same offline).

Prompt templates are files under ``prompts/``: an optional YAML front matter
(``system``: the system prompt; ``shared``: a block that many calls send alike,
e.g. the source documents every parallel analyst reads; ``offline``: the offline
provider's answer), then the user message. Both are Python format strings over the request's
variables. The ledger records the template file's SHA-256.

HTTP errors (Anthropic's error codes, https://docs.anthropic.com/en/api/errors):
400, 401, 403, 404, 413 and 422 raise a non-retryable ``ApplicationError`` saying
what to fix; 408, 409, 429, 5xx, 529 and connection errors raise a retryable one,
with ``next_retry_delay`` from ``retry-after-ms`` / ``retry-after`` when the
server sent one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from jsonschema import Draft202012Validator
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts import ArtifactStore
from activities.offline_answers import OFFLINE_ANSWERS
from models.llm import DocumentRef, LlmRequest, LlmResponse, LlmUsage, ModelPrice, model_price
from temporal_plumbing import metrics

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
HEARTBEAT_EVERY = 1.0  # seconds between heartbeats while an LLM call runs
TOOL_NAME = "respond"
NON_RETRYABLE_STATUS = {400, 401, 403, 404, 413, 422}
_ACTIONS = {
    400: "the request was invalid; check the prompt template and max_tokens",
    401: "the API key was refused; set a valid ANTHROPIC_API_KEY (or LLM_PROVIDER=offline)",
    403: "the API key may not use this model or endpoint; check the key's permissions",
    404: "model or endpoint not found; check LLM_MODEL / LLM_PHASE_MODELS and "
         "ANTHROPIC_BASE_URL",
    413: "the prompt is too large; pass fewer or shorter sources",
    422: "the request was refused as unprocessable; check the prompt and its schema",
}


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt template.

    Attributes:
        user: the user message; system: the system prompt (may be empty);
        offline: the offline provider's text answer (may be empty);
        sha256: hex SHA-256 of the template file's bytes;
        shared: a block sent alike by many calls (may be empty). The Anthropic
            provider sends it first, as a system block marked for prompt caching
            (``cache_control``), so calls that share it read it from the cache;
        variables: the values the template was rendered with (the offline answers
            read them, so they see what a model would, e.g. source texts loaded
            from artifact references before rendering).
    """

    user: str
    system: str
    offline: str
    sha256: str
    shared: str = ""
    variables: dict[str, Any] = field(default_factory=dict)


def render_template(name: str, variables: dict[str, Any], root: Path = PROMPTS) -> Prompt:
    """Load ``prompts/<name>`` and fill in ``variables`` (``str.format`` fields).

    Raises:
        ApplicationError: (non-retryable) no such template, or a field has no variable.
    """
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise ApplicationError(f"prompt template {name!r} not found under {root}",
                               type="PromptTemplateMissing", non_retryable=True)
    raw = path.read_bytes()
    text = raw.decode()
    meta: dict[str, Any] = {}
    if text.startswith("---\n"):
        head, _, text = text[4:].partition("\n---\n")
        meta = yaml.safe_load(head) or {}
    try:
        fill = lambda s: str(s).format_map(variables)  # noqa: E731
        return Prompt(user=fill(text).strip(), system=fill(meta.get("system", "")).strip(),
                      offline=fill(meta.get("offline", "")), sha256=hashlib.sha256(
                          raw).hexdigest(), shared=fill(meta.get("shared", "")).strip(),
                      variables=dict(variables))
    except (KeyError, IndexError, AttributeError) as err:
        raise ApplicationError(f"prompt template {name!r} needs the variable {err}; "
                               "pass it in LlmRequest.variables",
                               type="PromptVariableMissing", non_retryable=True) from None


def schema_errors(schema: dict[str, Any], data: Any) -> str | None:
    """The JSON-schema validation errors of ``data`` as one line, or None if valid."""
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if not errors:
        return None
    return "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}"
                     for e in errors[:10])


def retry_delay(headers: Any) -> timedelta | None:
    """The delay a server asked for: ``retry-after-ms`` (milliseconds) or
    ``retry-after`` (seconds or an HTTP date, RFC 9110 §10.2.3); None if absent."""
    if headers is None:
        return None
    if value := headers.get("retry-after-ms"):
        try:
            return timedelta(milliseconds=float(value))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return timedelta(seconds=max(float(value), 0))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return timedelta(seconds=max(when.timestamp() - time.time(), 0))


def api_error(err: Exception) -> ApplicationError:
    """The Temporal failure for an ``anthropic`` SDK exception (see module docstring)."""
    import anthropic

    if isinstance(err, anthropic.APIStatusError):
        status = err.status_code
        detail = getattr(err, "message", str(err))
        if status in NON_RETRYABLE_STATUS:
            return ApplicationError(f"Anthropic API {status}: {_ACTIONS[status]} ({detail})",
                                    type=f"AnthropicHTTP{status}", non_retryable=True)
        return ApplicationError(
            f"Anthropic API {status} (retried): {detail}", type=f"AnthropicHTTP{status}",
            next_retry_delay=retry_delay(err.response.headers))
    if isinstance(err, anthropic.APIConnectionError):  # includes APITimeoutError
        return ApplicationError(f"cannot reach the Anthropic API (retried): {err}",
                                type="AnthropicConnection")
    return ApplicationError(f"Anthropic SDK error: {err}", type="AnthropicError")


class LlmProvider(Protocol):
    """One way of answering an :class:`LlmRequest`."""

    name: str

    def model_for(self, phase: str) -> str:
        """The model that answers a request of ``phase``."""

    async def complete(self, request: LlmRequest, prompt: Prompt) -> LlmResponse:
        """Answer the request; raise ApplicationError on failure."""


class AnthropicProvider:
    """The Messages API (see the module docstring).

    Args:
        client: an ``anthropic.AsyncAnthropic`` built with ``max_retries=0``.
        model: the default model; phase_models: phase -> model overrides.
        prices: model (or prefix) -> price; validation_retries: re-asks on invalid output.
    """

    name = "anthropic"

    def __init__(self, client: Any, model: str, phase_models: dict[str, str],
                 prices: dict[str, ModelPrice], validation_retries: int = 2) -> None:
        self.client = client
        self.model = model
        self.phase_models = dict(phase_models)
        self.prices = dict(prices)
        self.validation_retries = validation_retries

    def model_for(self, phase: str) -> str:
        """``phase``'s model from LLM_PHASE_MODELS, else LLM_MODEL."""
        return self.phase_models.get(phase, self.model)

    async def complete(self, request: LlmRequest, prompt: Prompt) -> LlmResponse:
        """One call, plus re-asks while structured output fails its schema.

        Raises:
            ApplicationError: an HTTP or connection error (see :func:`api_error`), or
                (non-retryable, type ``LlmOutputInvalid``) output still invalid after
                the re-asks.
        """
        model = self.model_for(request.phase)
        usage = LlmUsage(provider=self.name, model=model, template_sha256=prompt.sha256,
                         phase=request.phase, attempts=0)
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt.user}]
        kwargs: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens}
        if prompt.shared:  # first, so the cached prefix is the same for every call
            kwargs["system"] = [{"type": "text", "text": prompt.shared,
                                 "cache_control": {"type": "ephemeral"}}]
            if prompt.system:
                kwargs["system"].append({"type": "text", "text": prompt.system})
        elif prompt.system:
            kwargs["system"] = prompt.system
        schema = request.output_schema
        if schema is not None:
            kwargs["tools"] = [{"name": TOOL_NAME, "input_schema": schema,
                                "description": "Give your answer by calling this tool."}]
            kwargs["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        started = time.monotonic()
        problem = ""
        for _ in range(self.validation_retries + 1):
            try:
                msg = await self.client.messages.create(messages=messages, **kwargs)
            except Exception as err:  # noqa: BLE001 - mapped to retryable or not
                raise api_error(err) from err
            usage.attempts += 1
            u = msg.usage
            usage.input_tokens += u.input_tokens or 0
            usage.output_tokens += u.output_tokens or 0
            usage.cache_creation_input_tokens += getattr(u, "cache_creation_input_tokens", 0) or 0
            usage.cache_read_input_tokens += getattr(u, "cache_read_input_tokens", 0) or 0
            usage.model = msg.model or model
            text = "".join(b.text for b in msg.content if b.type == "text")
            if schema is None:
                return self._done(text, None, usage, started)
            call = next((b for b in msg.content if b.type == "tool_use"), None)
            if call is not None and not (problem := schema_errors(schema, call.input) or ""):
                return self._done(json.dumps(call.input), dict(call.input), usage, started)
            problem = problem or f"no call of the {TOOL_NAME} tool"
            activity.logger.info("structured output invalid (%s); asking again", problem)
            messages.append({"role": "assistant", "content": [
                {"type": "text", "text": b.text} if b.type == "text" else
                {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input}
                for b in msg.content if b.type in ("text", "tool_use")] or "(empty)"})
            feedback = (f"Your answer did not match the schema: {problem}. Call the "
                        f"{TOOL_NAME} tool again with input that matches it.")
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "is_error": True,
                 "content": feedback}] if call is not None else feedback})
        self._price(usage, started)
        raise ApplicationError(
            f"the model's structured output for {request.phase} stayed invalid after "
            f"{usage.attempts} attempt(s): {problem}", usage.model_dump(mode="json"),
            type="LlmOutputInvalid", non_retryable=True)

    def _price(self, usage: LlmUsage, started: float) -> None:
        usage.latency_ms = (time.monotonic() - started) * 1000
        price = model_price(self.prices, usage.model) or model_price(self.prices, self.model)
        usage.cost_usd = price.cost(usage) if price else 0.0

    def _done(self, text: str, data: dict[str, Any] | None, usage: LlmUsage,
              started: float) -> LlmResponse:
        self._price(usage, started)
        return LlmResponse(text=text, data=data, usage=usage)


class OfflineProvider:
    """Deterministic output derived from the request (see the module docstring).

    Args:
        price: prices the token counts as an estimate (None: cost 0).
        latency: artificial delay of each call in seconds (benchmarks).
    """

    name = "offline"

    def __init__(self, price: ModelPrice | None = None, latency: float = 0.0) -> None:
        self.price = price
        self.latency = latency

    def model_for(self, phase: str) -> str:
        """Always ``offline``."""
        return "offline"

    async def complete(self, request: LlmRequest, prompt: Prompt) -> LlmResponse:
        """The same request always gives the same answer (see the module docstring).

        Raises:
            ApplicationError: (non-retryable) the template has no offline answer
                (``OfflineAnswerMissing``), or its answer does not match the
                request's schema (``LlmOutputInvalid``); what an offline answer
                itself raises (e.g. ``OfflineGenerationOff``).
        """
        started = time.monotonic()
        if self.latency:
            await asyncio.sleep(self.latency)
        answer = offline_answer(request, prompt)
        data = None
        if request.output_schema is not None:
            if not isinstance(answer, dict):
                raise ApplicationError(
                    f"the offline answer of {request.template} is not structured data",
                    type="LlmOutputInvalid", non_retryable=True)
            if problem := schema_errors(request.output_schema, answer):
                raise ApplicationError(
                    f"the offline answer of {request.template} does not match its schema: "
                    f"{problem}", type="LlmOutputInvalid", non_retryable=True)
            data, text = answer, json.dumps(answer)
        else:
            text = answer if isinstance(answer, str) else json.dumps(answer)
        seed = f"{prompt.system}\n{prompt.user}"
        usage = LlmUsage(provider=self.name, model="offline", template_sha256=prompt.sha256,
                         phase=request.phase, input_tokens=len(seed) // 4 + 1,
                         output_tokens=len(text) // 4 + 1)
        usage.cost_usd = self.price.cost(usage) if self.price else 0.0
        usage.latency_ms = (time.monotonic() - started) * 1000
        return LlmResponse(text=text, data=data, usage=usage)


def offline_answer(request: LlmRequest, prompt: Prompt) -> dict[str, Any] | str:
    """The offline answer to ``request``: its template's entry in OFFLINE_ANSWERS,
    else the template's ``offline`` front matter (parsed as YAML for a structured
    request).

    Raises:
        ApplicationError: (non-retryable, ``OfflineAnswerMissing``) neither exists.
    """
    handler = OFFLINE_ANSWERS.get(request.template)
    if handler is not None:
        return handler(dict(prompt.variables or request.variables))
    if prompt.offline.strip():
        if request.output_schema is None:
            return prompt.offline
        data = yaml.safe_load(prompt.offline)
        return data if isinstance(data, dict) else {"answer": data}
    raise ApplicationError(
        f"the prompt template {request.template!r} has no offline answer: register one "
        "in activities/offline_answers.py (or give it an 'offline' front-matter field), "
        "or set ANTHROPIC_API_KEY", type="OfflineAnswerMissing", non_retryable=True)


def template_lines(root: Path = PROMPTS, min_words: int = 5) -> dict[str, list[str]]:
    """The fixed wording of every template under ``root``: template name -> its lines
    (front matter included) of at least ``min_words`` words, with the format fields
    removed. A report or item that contains one of them carries prompt text."""
    out: dict[str, list[str]] = {}
    for path in sorted(root.glob("*.md")):
        lines = []
        for raw in path.read_text().splitlines():
            line = raw.strip().lstrip("-#>*").strip()
            if line.startswith(("system:", "offline:")):
                line = line.split(":", 1)[1].strip()
            for part in re.split(r"\{[^{}]*\}", line):
                part = part.strip(" `;:,.()")
                if len(part.split()) >= min_words:
                    lines.append(part)
        out[path.name] = lines
    return out


NO_DOCUMENTS = "(none)"


def render_documents(documents: list[DocumentRef], store: ArtifactStore | None) -> str:
    """The text of one ``LlmRequest.documents`` variable (see its docstring): each
    document's header and the first ``chars`` characters of its text (read from
    ``store`` when it is a reference), separated by blank lines; ``(none)`` when
    there are none.

    Raises:
        ApplicationError: (non-retryable, ``DocumentUnavailable``) a reference but no
            store, or the artifact is outside the store, missing or changed since it
            was written; the message names the artifact.
    """
    blocks = []
    for doc in documents:
        text = doc.text
        if doc.ref is not None and doc.chars != 0:
            if store is None:
                raise ApplicationError("documents by reference need the artifact store "
                                       "on the worker", type="DocumentUnavailable",
                                       non_retryable=True)
            text = store.read_text(doc.ref, f"document {doc.ref.path}")
        shown = text if doc.chars is None else text[:doc.chars]
        blocks.append(f"{doc.header}\n{shown}".strip("\n").rstrip())
    return "\n\n".join(blocks) or NO_DOCUMENTS


class LlmActivities:
    """The ``llm_complete`` activity with the provider this worker uses.

    Args:
        provider: an :class:`AnthropicProvider` or :class:`OfflineProvider`.
        prompts: the prompt template directory.
        store: the artifact store that ``LlmRequest.documents`` refer to (None: a
            request with documents by reference is refused).
    """

    def __init__(self, provider: LlmProvider, prompts: Path = PROMPTS,
                 store: ArtifactStore | None = None) -> None:
        self.provider = provider
        self.prompts = prompts
        self.store = store

    @activity.defn(name="llm_complete")
    async def llm_complete(self, request: LlmRequest) -> LlmResponse:
        """Render the request's template and answer it with the provider.

        Returns:
            The answer's text, validated structured data (when the request has a
            schema) and the usage for the ledger.

        Raises:
            ApplicationError: see :class:`AnthropicProvider`, :func:`render_template`
                and :func:`render_documents`.
        """
        variables = {**request.variables, **{
            name: render_documents(docs, self.store) for name, docs in request.documents.items()}}
        prompt = render_template(request.template, variables, self.prompts)
        beating = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY))
        try:
            response = await self.provider.complete(request, prompt)
        except Exception as err:  # counted, then raised as it was
            error = err.type if isinstance(err, ApplicationError) and err.type else \
                type(err).__name__
            metrics.llm_failed(activity.metric_meter(), request.phase,
                               self.provider.model_for(request.phase), error)
            raise
        finally:
            beating.cancel()
        u = response.usage
        metrics.llm_call(activity.metric_meter(), u.phase or request.phase, u.model,
                         {"input": u.input_tokens, "output": u.output_tokens,
                          "cache_read": u.cache_read_input_tokens,
                          "cache_creation": u.cache_creation_input_tokens}, u.cost_usd)
        return response


async def _heartbeat_every(seconds: float) -> None:
    """Heartbeat every ``seconds`` until cancelled, so a worker that dies mid-call is
    noticed after the call's heartbeat timeout (workflows/policies.py
    LLM_HEARTBEAT_TIMEOUT) and the call is retried, not after LLM_TIMEOUT; a
    cancellation requested by the workflow reaches the call at the next heartbeat."""
    while True:
        await asyncio.sleep(seconds)
        activity.heartbeat()


def build_llm_provider(settings: Any) -> LlmProvider:
    """The provider ``settings`` choose (``Settings.effective_llm_provider``)."""
    if settings.effective_llm_provider == "offline":
        return OfflineProvider(model_price(settings.llm_prices, settings.llm_model),
                               settings.llm_offline_latency.total_seconds())
    return build_anthropic_provider(settings)


def build_anthropic_provider(settings: Any) -> AnthropicProvider:
    """The Anthropic provider from ``settings`` (needs ANTHROPIC_API_KEY)."""
    from anthropic import AsyncAnthropic

    client = AsyncAnthropic(api_key=settings.anthropic_api_key.get_secret_value(),
                            base_url=settings.anthropic_base_url, max_retries=0,
                            timeout=settings.llm_timeout.total_seconds())
    return AnthropicProvider(client, settings.llm_model, settings.llm_phase_models,
                             settings.llm_prices, settings.llm_validation_retries)
