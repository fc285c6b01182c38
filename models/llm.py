"""LOCAL SEAM (issue 5) for the LLM layer of issue 4: the contract's shapes only.

Replaced by issue 4's ``models/llm.py`` when "LLM layer:" lands on main.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LlmRequest(BaseModel):
    """Input of ``llm_complete``: a prompt template under ``prompts/``, its variables
    and an optional JSON schema for structured output."""

    phase: str = Field(min_length=1)
    template: str = Field(min_length=1)
    variables: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    max_tokens: int = Field(default=2048, gt=0)


class LlmUsage(BaseModel):
    """What one LLM call used."""

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


class LlmResponse(BaseModel):
    """Output of ``llm_complete``: text, validated structured data, usage."""

    text: str
    data: dict[str, Any] | None = None
    usage: LlmUsage
