"""LOCAL SEAM (issue 5) for the LLM layer of issue 4: ``llm_complete`` with the
offline provider only (deterministic, schema-valid output derived from the input).

Replaced by issue 4's ``activities/llm.py`` when "LLM layer:" lands on main.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.llm import LlmRequest, LlmResponse, LlmUsage

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


def _pick(seed: str, key: str, n: int) -> int:
    return int(hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()[:8], 16) % max(n, 1)


def offline_instance(schema: dict[str, Any], seed: str, path: str = "") -> Any:
    """A value valid against a simple JSON schema, chosen deterministically from ``seed``."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][_pick(seed, path, len(schema["enum"]))]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if kind == "object":
        return {k: offline_instance(s, seed, f"{path}/{k}")
                for k, s in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(schema.get("minItems", 1), min(schema.get("maxItems", 2), 2))
        return [offline_instance(schema.get("items", {}), seed, f"{path}/{i}")
                for i in range(count)]
    if kind == "boolean":
        return _pick(seed, path, 2) == 1
    if kind in ("number", "integer"):
        return _pick(seed, path, 100)
    words = seed.split() or ["offline"]
    start = _pick(seed, path, len(words))
    return " ".join(words[start:start + 12]) or words[0]


class LlmActivities:
    """The ``llm_complete`` activity (offline provider only in this seam)."""

    def __init__(self, prompts: Path = PROMPTS) -> None:
        self.prompts = prompts

    @activity.defn(name="llm_complete")
    async def llm_complete(self, request: LlmRequest) -> LlmResponse:
        """Render ``prompts/<template>`` (YAML front matter, then ``str.format`` text)
        and answer it offline."""
        path = self.prompts / request.template
        if not path.is_file():
            raise ApplicationError(f"prompt template {request.template!r} not found",
                                   non_retryable=True)
        raw = path.read_bytes()
        text = raw.decode()
        if text.startswith("---\n"):
            head, _, text = text[4:].partition("\n---\n")
            yaml.safe_load(head)
        prompt = text.format_map(request.variables)
        data = (offline_instance(request.output_schema, prompt)
                if request.output_schema is not None else None)
        out = json.dumps(data) if data is not None else f"provider: offline\n\n{prompt[:200]}"
        usage = LlmUsage(provider="offline", model="offline", phase=request.phase,
                         template_sha256=hashlib.sha256(raw).hexdigest(),
                         input_tokens=len(prompt) // 4 + 1, output_tokens=len(out) // 4 + 1)
        return LlmResponse(text=out, data=data, usage=usage)
