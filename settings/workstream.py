"""Settings of the workstream engine."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from settings.base import EnvSettings


class WorkstreamSettings(EnvSettings):
    """The router config of specs that name none."""

    workstream_router_config: Path | None = Field(
        None, description="router config YAML of workstream specs that name none "
        "(unset: one tool per adapter: shell, python, agent, noop)")
