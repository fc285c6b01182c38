"""Models of the git operations (activities/git.py) shared by every orchestration
that works in a repository: the feature branch and its worktree."""

from __future__ import annotations

from pydantic import BaseModel


class BranchRef(BaseModel):
    """A feature branch named ``NNN-slug``, created from ``base`` at ``base_commit``."""

    name: str
    number: int
    base: str
    base_commit: str


class PrepareBranchInput(BaseModel):
    """Activity input: create (or find) the feature branch of a workflow."""

    workflow_id: str
    repo_path: str
    base_branch: str
    slug: str


class WorktreeInput(BaseModel):
    """Activity input: add (or remove) the git worktree of a branch."""

    repo_path: str
    branch: str
