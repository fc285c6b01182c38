"""Settings of the LLM layer: provider, models, prices, budget."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from models.llm import ModelPrice
from settings.base import EnvSettings, OptionalSecret

# Anthropic's list prices, USD per million tokens (input, output, cache write, cache read).
DEFAULT_LLM_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-6": ModelPrice(input=5, output=25, cache_write=6.25, cache_read=0.5),
    "claude-opus-4-5": ModelPrice(input=5, output=25, cache_write=6.25, cache_read=0.5),
    "claude-sonnet-4-6": ModelPrice(input=3, output=15, cache_write=3.75, cache_read=0.3),
    "claude-sonnet-4-5": ModelPrice(input=3, output=15, cache_write=3.75, cache_read=0.3),
    "claude-haiku-4-5": ModelPrice(input=1, output=5, cache_write=1.25, cache_read=0.1),
}


class LlmSettings(EnvSettings):
    """The LLM provider (Anthropic or offline), models per phase, prices and budget."""

    llm_provider: Literal["anthropic", "offline"] | None = Field(
        None, description="`anthropic` or `offline`; unset: anthropic when "
        "ANTHROPIC_API_KEY is set, else offline")
    anthropic_api_key: OptionalSecret = Field(None, description="Anthropic API key")
    anthropic_base_url: str | None = Field(
        None, description="any Anthropic-compatible Messages API endpoint")
    llm_model: str = Field("claude-sonnet-4-6", description="model of every phase not "
                           "named in LLM_PHASE_MODELS")
    llm_phase_models: dict[str, str] = Field(
        default_factory=dict, description='JSON: phase -> model, e.g. '
        '{"analysis_integrate": "claude-opus-4-6"}')
    llm_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_LLM_PRICES),
        description="JSON: model (or model-name prefix) -> USD per million tokens "
        "{input, output, cache_write, cache_read}")
    llm_validation_retries: int = Field(
        2, ge=0, description="re-asks after structured output fails its schema")
    llm_timeout: timedelta = Field(
        timedelta(minutes=5), description="limit of one LLM HTTP request")
    llm_budget_usd: float | None = Field(
        5.0, gt=0, description="per-workflow LLM budget in USD; at it the workflow waits "
        "at the `budget` gate (unset: unlimited)")
    llm_offline_latency: timedelta = Field(
        timedelta(0), description="artificial latency of each offline call (benchmarks)")

    @property
    def effective_llm_provider(self) -> str:
        """LLM_PROVIDER, or its default: anthropic with an API key, else offline."""
        if self.llm_provider:
            return self.llm_provider
        return "anthropic" if self.anthropic_api_key is not None else "offline"

    def llm_provider_notice(self) -> str | None:
        """One line saying the offline provider was chosen by default, else None."""
        if self.llm_provider is None and self.effective_llm_provider == "offline":
            return ("note: ANTHROPIC_API_KEY is not set, so LLM calls use the offline "
                    "provider (deterministic stand-in output marked `provider: offline`)")
        return None
