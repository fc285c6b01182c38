"""Settings of the SDLC orchestration and its agent runners."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from settings.base import EnvSettings


class AgentSettings(EnvSettings):
    """The default agent runner, its command and limits, and the SDLC round limit."""

    agent_runner: Literal["offline", "command", "claude", "anthropic"] = Field(
        "offline", description="default agent runner of the SDLC workflow")
    agent_command: str = Field(
        "", description="shell command of the `command` agent runner (request on stdin)")
    claude_executable: str = Field("claude", description="the Claude Code CLI for `claude`")
    agent_timeout: timedelta = Field(
        timedelta(minutes=30), description="wall-clock limit of one agent run")
    sdlc_max_rounds: int = Field(3, ge=1, description="spec rounds before an SDLC run FAILS")
