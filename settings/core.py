"""Settings every orchestration shares: the task queue, the web UI, local state
and the gates' timing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from settings.base import EnvSettings


class CoreSettings(EnvSettings):
    """Task queue, web UI link, ORCHESTRATOR_HOME and the directories under it,
    gate reminders and expiry, and who may sign gate decisions (GATE_SIGNERS)."""

    temporal_task_queue: str = Field(
        "orchestrator", description="task queue the worker polls and the CLI starts on")
    temporal_ui_url: str = Field(
        "http://localhost:8233", description="web UI base URL, for links the CLI prints")
    orchestrator_home: Path = Field(
        Path(".orchestrator"),
        description="local state: dev-server database, worktrees, local issues, artifacts")
    gate_reminder_interval: timedelta = Field(
        timedelta(hours=24), description="a reminder is recorded this often at an open gate")
    gate_expiry: timedelta | None = Field(
        None, description="an open gate expires after this long (unset: never)")
    gate_signers: Path | None = Field(
        None, description="allowed_signers file (ssh-keygen format) of the reviewers' "
        "ed25519 keys: when set, every gate decision must be SSH-signed by a listed key "
        "(`key:<principal>`) or come from GitHub; unset: anyone who reaches the server decides")

    @property
    def worktree_root(self) -> Path:
        """Where SDLC worktrees are made."""
        return (self.orchestrator_home / "worktrees").resolve()

    @property
    def issues_root(self) -> Path:
        """Where the local issue tracker keeps its issues."""
        return (self.orchestrator_home / "issues").resolve()

    @property
    def workspace_root(self) -> Path:
        """Where workstream runs without a repository get their workspace."""
        return (self.orchestrator_home / "workspaces").resolve()

    @property
    def artifact_root(self) -> Path:
        """The artifact store's directory."""
        return (self.orchestrator_home / "artifacts").resolve()
