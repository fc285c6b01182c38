"""The LLM providers: the real ``anthropic`` SDK against a local server that speaks the
Messages API, and the offline provider."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest
from anthropic import AsyncAnthropic
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm import AnthropicProvider, LlmActivities, OfflineProvider, schema_errors
from models.llm import LlmRequest, ModelPrice
from settings import DEFAULT_LLM_PRICES, load_settings
from tests.fakes import anthropic_api as api

SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["go", "stop"]},
                   "score": {"type": "number", "minimum": 0, "maximum": 1},
                   "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["verdict", "score", "reasons"],
}


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    (tmp_path / "judge.md").write_text(
        "---\nsystem: You judge {topic}.\noffline: 'offline verdict on {topic}'\n---\n"
        "Judge this: {topic}\n")
    (tmp_path / "judge_data.md").write_text(
        "---\noffline: '{{verdict: go, score: 0.5, reasons: [offline verdict on {topic}]}}'"
        "\n---\nJudge this: {topic}\n")
    (tmp_path / "bare.md").write_text("Judge this: {topic}\n")
    return tmp_path


@pytest.fixture
def fake():
    with api.serve() as server:
        yield server


def activities(url: str, prompts: Path, retries: int = 2) -> LlmActivities:
    client = AsyncAnthropic(api_key="sk-test", base_url=url, max_retries=0, timeout=5)
    provider = AnthropicProvider(client, "claude-sonnet-4-6", {"judge": "claude-haiku-4-5"},
                                 DEFAULT_LLM_PRICES, retries)
    return LlmActivities(provider, prompts)


def request(**overrides) -> LlmRequest:
    return LlmRequest(**{"phase": "review", "template": "judge.md",
                         "variables": {"topic": "the CSV export"}, "output_schema": SCHEMA,
                         **overrides})


async def complete(acts: LlmActivities, req: LlmRequest):
    return await ActivityEnvironment().run(acts.llm_complete, req)


async def test_tool_use_is_parsed_and_usage_priced(fake, prompts):
    fake.script = [api.tool_use({"verdict": "go", "score": 0.8, "reasons": ["clear"]},
                                input_tokens=1000, output_tokens=500, cache_read=2000)]
    resp = await complete(activities(fake.url, prompts), request())
    assert resp.data == {"verdict": "go", "score": 0.8, "reasons": ["clear"]}
    usage = resp.usage
    assert (usage.provider, usage.model, usage.phase) == ("anthropic", "claude-sonnet-4-6",
                                                          "review")
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (
        1000, 500, 2000)
    # sonnet: $3 / $15 / $0.30 per million input / output / cache-read tokens
    assert usage.cost_usd == pytest.approx((1000 * 3 + 500 * 15 + 2000 * 0.3) / 1e6)
    assert len(usage.template_sha256) == 64 and usage.latency_ms > 0
    sent = fake.requests[0]
    assert sent["tool_choice"] == {"type": "tool", "name": "respond"}
    assert sent["tools"][0]["input_schema"] == SCHEMA
    assert sent["system"] == "You judge the CSV export."
    assert sent["messages"] == [{"role": "user", "content": "Judge this: the CSV export"}]
    assert "sk-test" in (fake.headers[0].get("x-api-key") or fake.headers[0]["authorization"])


async def test_phase_model_and_plain_text(fake, prompts):
    fake.script = [api.text("Looks fine.", model="claude-haiku-4-5", input_tokens=10,
                            output_tokens=4)]
    resp = await complete(activities(fake.url, prompts), request(phase="judge",
                                                                 output_schema=None))
    assert resp.text == "Looks fine." and resp.data is None
    assert fake.requests[0]["model"] == "claude-haiku-4-5" and "tools" not in fake.requests[0]
    assert resp.usage.cost_usd == pytest.approx((10 * 1 + 4 * 5) / 1e6)


async def test_invalid_structured_output_is_asked_again_with_the_error(fake, prompts):
    fake.script = [api.tool_use({"verdict": "maybe", "score": 3}),
                   api.tool_use({"verdict": "stop", "score": 0.1, "reasons": ["risky"]})]
    resp = await complete(activities(fake.url, prompts), request())
    assert resp.data["verdict"] == "stop" and resp.usage.attempts == 2
    assert resp.usage.input_tokens == 200 and resp.usage.output_tokens == 100
    second = fake.requests[1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    feedback = second[2]["content"][0]
    assert feedback["type"] == "tool_result" and feedback["is_error"] is True
    assert "'maybe' is not one of" in feedback["content"] and "reasons" in feedback["content"]


async def test_output_still_invalid_after_the_reasks_fails_for_good(fake, prompts):
    fake.script = [api.tool_use({"verdict": "maybe"})] * 2
    with pytest.raises(ApplicationError) as failure:
        await complete(activities(fake.url, prompts, retries=1), request())
    assert failure.value.non_retryable and failure.value.type == "LlmOutputInvalid"
    assert len(fake.requests) == 2
    assert failure.value.details[0]["attempts"] == 2  # the usage, for the ledger


async def test_429_is_retryable_after_the_servers_retry_after(fake, prompts):
    fake.script = [api.error(429, "slow down", retry_after="7")]
    with pytest.raises(ApplicationError) as failure:
        await complete(activities(fake.url, prompts), request())
    assert not failure.value.non_retryable
    assert failure.value.next_retry_delay == timedelta(seconds=7)
    assert len(fake.requests) == 1  # the SDK's own retries are off


async def test_529_overloaded_is_retryable(fake, prompts):
    fake.script = [api.error(529, "Overloaded")]
    with pytest.raises(ApplicationError) as failure:
        await complete(activities(fake.url, prompts), request())
    assert not failure.value.non_retryable and failure.value.type == "AnthropicHTTP529"
    assert len(fake.requests) == 1


async def test_401_is_not_retryable_and_says_what_to_fix(fake, prompts):
    fake.script = [api.error(401, "invalid x-api-key")]
    with pytest.raises(ApplicationError) as failure:
        await complete(activities(fake.url, prompts), request())
    assert failure.value.non_retryable
    assert "ANTHROPIC_API_KEY" in failure.value.message


async def test_connection_error_is_retryable(prompts):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ApplicationError) as failure:
        await complete(activities(f"http://127.0.0.1:{port}", prompts), request())
    assert not failure.value.non_retryable and failure.value.type == "AnthropicConnection"


async def test_missing_variable_is_not_retryable(fake, prompts):
    with pytest.raises(ApplicationError) as failure:
        await complete(activities(fake.url, prompts), request(variables={}))
    assert failure.value.non_retryable and "topic" in failure.value.message


async def test_offline_is_deterministic_schema_valid_and_marked(prompts):
    acts = LlmActivities(OfflineProvider(ModelPrice(input=3, output=15)), prompts)
    first = await complete(acts, request(template="judge_data.md"))
    again = await complete(acts, request(template="judge_data.md"))
    other = await complete(acts, request(template="judge_data.md",
                                         variables={"topic": "something else entirely"}))
    assert schema_errors(SCHEMA, first.data) is None
    assert first.data == again.data and first.text == again.text
    assert first.data["reasons"] == ["offline verdict on the CSV export"]
    assert first.usage.provider == "offline" and first.usage.cost_usd > 0
    assert other.data != first.data  # derived from the input
    text = await complete(acts, request(output_schema=None))
    assert text.text == "offline verdict on the CSV export"


async def test_offline_refuses_templates_without_a_counterpart(prompts):
    """No filler: a template without an offline answer, or whose answer does not
    fit the schema, is refused for good instead of answered with words of the prompt."""
    acts = LlmActivities(OfflineProvider(), prompts)
    with pytest.raises(ApplicationError) as missing:
        await complete(acts, request(template="bare.md"))
    assert missing.value.non_retryable and missing.value.type == "OfflineAnswerMissing"
    with pytest.raises(ApplicationError) as invalid:
        await complete(acts, request())  # a text answer for a structured request
    assert invalid.value.non_retryable and invalid.value.type == "LlmOutputInvalid"


def test_provider_defaults_to_offline_without_a_key_with_a_notice(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("LLM_PROVIDER", raising=False)
    settings = load_settings(_env_file=None)
    assert settings.effective_llm_provider == "offline"
    assert "ANTHROPIC_API_KEY" in settings.llm_provider_notice()
    keyed = load_settings(_env_file=None, anthropic_api_key="sk-x")
    assert keyed.effective_llm_provider == "anthropic" and keyed.llm_provider_notice() is None


def test_a_model_without_a_price_is_refused(monkeypatch):
    from settings import SettingsError

    with pytest.raises(SettingsError, match="no price in LLM_PRICES"):
        load_settings(_env_file=None, anthropic_api_key="sk-x", llm_model="my-local-model")


async def test_parallel_analysts_share_the_source_block_through_the_prompt_cache(fake):
    """The analyst template's shared source block goes first, marked with
    cache_control: the fake API writes it to its cache on the first call and the
    other analysts read it; the ledger prices writes and reads at their own rates."""
    from activities.llm import PROMPTS
    from models.llm import LlmLedger

    sources = "[L0-1] (L0) notes — notes.md\n" + "The mandate starts in 2025. " * 300
    acts = activities(fake.url, PROMPTS)
    fake.script = [api.text("---\nanalyst: x\n---\nbody", input_tokens=50)
                   for _ in range(3)]
    usages = []
    for aid in ("market", "risk", "customer"):
        resp = await complete(acts, LlmRequest(
            phase="analysis_analyst", template="analysis_analyst.md", output_schema=None,
            variables={"problem": "Enter Germany?", "analyst_id": aid,
                       "analyst_name": f"{aid} analyst", "analyst_focus": f"{aid} lens",
                       "analyst_reference": "", "sources": sources,
                       "source_ids": '["L0-1"]', "previous_error": "(none)"}))
        usages.append(resp.usage)
    for body in fake.requests:
        first, own = body["system"]
        assert first["cache_control"] == {"type": "ephemeral"}
        assert first["text"].startswith("## Source documents") and "mandate" in first["text"]
        assert "cache_control" not in own and "lens" in own["text"]
        assert "mandate" not in body["messages"][0]["content"]  # sent once, in the cache
    assert [kind for kind, _ in fake.cache_events] == ["write", "read", "read"]
    written = usages[0].cache_creation_input_tokens
    assert written > 1000 and usages[0].cache_read_input_tokens == 0
    assert all(u.cache_read_input_tokens == written for u in usages[1:])
    # sonnet: $3.75 per million cache-write tokens, $0.30 per million cache reads
    assert usages[0].cost_usd == pytest.approx((50 * 3 + 50 * 15 + written * 3.75) / 1e6)
    assert usages[1].cost_usd == pytest.approx((50 * 3 + 50 * 15 + written * 0.3) / 1e6)
    phase = LlmLedger.of(usages, None).by_phase[0]
    assert (phase.cache_write_tokens, phase.cache_read_tokens) == (written, 2 * written)


def test_the_fake_api_refuses_malformed_cache_control():
    block = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    assert api.cache_problem({"system": [block] * 4}) is None
    assert "maximum of 4" in api.cache_problem({"system": [block] * 5})
    assert "invalid" in api.cache_problem({"system": [{**block, "cache_control": {
        "type": "persistent"}}]})
    assert "empty" in api.cache_problem({"system": [{**block, "text": " "}]})
