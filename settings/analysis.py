"""Settings of the analysis pipeline and its web search."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from settings.base import EnvSettings, OptionalSecret


class AnalysisSettings(EnvSettings):
    """Exa web search, the analysis catalogue, analyst concurrency and degradation."""

    exa_api_key: OptionalSecret = Field(
        None, description="Exa API key: turns on L2 web search in the analysis pipeline")
    exa_base_url: str | None = Field(None, description="Exa API endpoint (default Exa's)")
    analysis_catalogue: Path | None = Field(
        None, description="YAML of synthesizers, templates and analysts (default: the "
        "shipped catalogue/analysis.yaml)")
    analysis_concurrency: int = Field(5, ge=1, description="analysts that run at once")
    analysis_graceful_degradation: bool = Field(
        False, description="with 2+ failed analysts, go on with the rest instead of aborting")
    analysis_max_web_searches: int = Field(
        3, ge=0, description="web searches allowed per analysis run")
