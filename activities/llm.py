"""The LLM layer: the ``llm_complete`` activity and its providers.

* :class:`AnthropicProvider`: the Messages API through ``AsyncAnthropic`` with the
  SDK's own retries off (Temporal retries). Structured output is a forced tool
  call whose ``input_schema`` is the request's JSON schema; the tool input is
  validated with ``jsonschema`` and, when invalid, the model is asked again with
  the validation error (a ``tool_result`` with ``is_error``), up to
  ``LLM_VALIDATION_RETRIES`` times.
* :class:`OfflineProvider`: no model; deterministic output derived from the
  request: schema-valid data for structured requests, and for text the
  template's ``offline`` front-matter field rendered with the variables.
  Usage says ``provider: offline``; its cost is what LLM_MODEL would have
  charged for the same token counts (so budgets behave the same offline).

Prompt templates are files under ``prompts/``: an optional YAML front matter
(``system``: the system prompt; ``offline``: the offline provider's answer),
then the user message. Both are Python format strings over the request's
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
import time
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from jsonschema import Draft202012Validator
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.llm import LlmRequest, LlmResponse, LlmUsage, ModelPrice, model_price

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
        sha256: hex SHA-256 of the template file's bytes.
    """

    user: str
    system: str
    offline: str
    sha256: str


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
                          raw).hexdigest())
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

    async def complete(self, request: LlmRequest, prompt: Prompt) -> LlmResponse:
        """One call, plus re-asks while structured output fails its schema.

        Raises:
            ApplicationError: an HTTP or connection error (see :func:`api_error`), or
                (non-retryable, type ``LlmOutputInvalid``) output still invalid after
                the re-asks.
        """
        model = self.phase_models.get(request.phase, self.model)
        usage = LlmUsage(provider=self.name, model=model, template_sha256=prompt.sha256,
                         phase=request.phase, attempts=0)
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt.user}]
        kwargs: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens}
        if prompt.system:
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

    async def complete(self, request: LlmRequest, prompt: Prompt) -> LlmResponse:
        """The same request always gives the same answer."""
        started = time.monotonic()
        if self.latency:
            await asyncio.sleep(self.latency)
        seed = f"{prompt.system}\n{prompt.user}"
        data = None
        if request.output_schema is not None:
            data = offline_instance(request.output_schema, seed, request.output_schema)
            text = json.dumps(data)
        else:
            text = prompt.offline or (
                f"provider: offline\n\nDeterministic stand-in answer for `{request.template}` "
                f"(prompt sha256 {hashlib.sha256(seed.encode()).hexdigest()[:12]}); no "
                "language model was called.\n")
        usage = LlmUsage(provider=self.name, model="offline", template_sha256=prompt.sha256,
                         phase=request.phase, input_tokens=len(seed) // 4 + 1,
                         output_tokens=len(text) // 4 + 1)
        usage.cost_usd = self.price.cost(usage) if self.price else 0.0
        usage.latency_ms = (time.monotonic() - started) * 1000
        return LlmResponse(text=text, data=data, usage=usage)


def _pick(seed: str, key: str, n: int) -> int:
    """A deterministic number in [0, n) from ``seed`` and ``key``."""
    return int(hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()[:8], 16) % max(n, 1)


def offline_instance(schema: dict[str, Any], seed: str, root: dict[str, Any],
                     path: str = "") -> Any:
    """A value valid against ``schema`` (a JSON-schema subset: ``$ref`` into ``$defs``,
    ``enum``/``const``, ``anyOf``/``oneOf``, object, array, string, number, integer,
    boolean, null with their usual bounds), chosen deterministically from ``seed``.
    Strings are words of the seed text, so the output reflects the input."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return offline_instance(target, seed, root, path)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][_pick(seed, path, len(schema["enum"]))]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return offline_instance(options[0], seed, root, path)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: offline_instance(sub, seed, root, f"{path}/{name}")
                for name, sub in props.items()}
    if kind == "array":
        low = schema.get("minItems", 1)
        count = max(low, min(schema.get("maxItems", 2), 2))
        items = [offline_instance(schema.get("items", {}), seed, root, f"{path}/{i}")
                 for i in range(count)]
        if schema.get("uniqueItems"):
            items = list({json.dumps(i, sort_keys=True): i for i in items}.values())
        return items
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 100))
        value = low + (high - low) * _pick(seed, path, 1001) / 1000
        if kind == "integer":
            value = int(round(value))
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            value = schema["exclusiveMinimum"] + (1 if kind == "integer" else 1e-3)
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            value = schema["exclusiveMaximum"] - (1 if kind == "integer" else 1e-3)
        return round(value, 3) if kind == "number" else value
    if kind == "boolean":
        return _pick(seed, path, 2) == 1
    if kind == "null":
        return None
    words = seed.split() or ["offline"]
    start = _pick(seed, path, len(words))
    text = " ".join(words[start:start + 12]) or words[0]
    text = text[:schema.get("maxLength", 400)]
    return text.ljust(schema.get("minLength", 0), ".")


class LlmActivities:
    """The ``llm_complete`` activity with the provider this worker uses.

    Args:
        provider: an :class:`AnthropicProvider` or :class:`OfflineProvider`.
        prompts: the prompt template directory.
    """

    def __init__(self, provider: LlmProvider, prompts: Path = PROMPTS) -> None:
        self.provider = provider
        self.prompts = prompts

    @activity.defn(name="llm_complete")
    async def llm_complete(self, request: LlmRequest) -> LlmResponse:
        """Render the request's template and answer it with the provider.

        Returns:
            The answer's text, validated structured data (when the request has a
            schema) and the usage for the ledger.

        Raises:
            ApplicationError: see :class:`AnthropicProvider` and :func:`render_template`.
        """
        prompt = render_template(request.template, request.variables, self.prompts)
        beating = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY))
        try:
            return await self.provider.complete(request, prompt)
        finally:
            beating.cancel()


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
