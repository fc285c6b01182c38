"""Settings of the workstream engine."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from settings.base import EnvSettings, NameList


class WorkstreamSettings(EnvSettings):
    """The worker's router config (the only tools runs may use; also the CLI's
    router config of specs that name none) and the python step allowlist."""

    workstream_router_config: Path | None = Field(
        None, description="the worker's router config: the only tools and routes workstream "
        "runs may use; also the router config of specs that name none "
        "(unset: one tool per adapter: shell, python, agent, noop)")
    workstream_python_modules: NameList = Field(
        default_factory=list, description="modules whose functions workstream `python` steps "
        "may call (exact names, e.g. mypkg.steps); empty: no python step may run")
    workstream_trust_spec_tools: bool = Field(
        False, description="accept tools and routes a workstream spec defines that the "
        "worker's router config does not (development only; such tools get no secrets)")
