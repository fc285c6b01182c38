"""Agent runners (offline, command, claude, anthropic) and the activity that runs one.

An agent writes ``specs/<branch>/spec.md`` in the feature's worktree. The
activity heartbeats while the agent runs, kills the agent's process group on
cancellation or timeout, checks the spec exists and is not empty, commits it
(one commit per round, see :func:`activities.git.commit_round`) and returns a
reference to it, never its text. Reviewers' feedback reaches the agent as a
file beside the file it writes (``specs/<branch>/feedback.md`` for the SDLC spec,
``feedback-<step>.md`` in the directory of a workstream step's ``output``),
committed with it, built from the previous round's commit plus the one new
comment the task carries.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts import file_ref
from activities.git import commit_round, fence_dir, git
from activities.llm import LlmProvider, render_template
from activities.processes import (
    HEARTBEAT_EVERY,
    Fence,
    attempt_owner,
    run_process,
    run_process_split,
)
from activities.secrets import Scrubber, subprocess_env
from models.llm import LlmArtifactRef, LlmRequest, LlmUsage
from models.sdlc import AgentTask, output_path_problem

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
# run_process, run_process_split and HEARTBEAT_EVERY (well inside
# policies.AGENT_HEARTBEAT_TIMEOUT) live in the subprocess layer, activities/processes.py
__all__ = ["HEARTBEAT_EVERY", "run_process", "run_process_split"]


FEEDBACK_FILE_ENV = "SDLC_FEEDBACK_FILE"
_ROUND_MARK = "<!-- feedback on round {n} -->"
_ROUND_MARK_RE = re.compile(r"^<!-- feedback on round (\d+) -->$", re.MULTILINE)


def render_feedback(rounds: list[str], spec_relpath: str) -> str:
    """The text of the feedback file: one section per round, oldest first (the
    feedback on round 1 first); each section starts with a marker line that
    :func:`parse_feedback` splits on."""
    head = (f"# Reviewer feedback\n\nWhat the reviewers asked to change in "
            f"`{spec_relpath}`, one section per round, newest last. Address every round.\n")
    sections = [f"\n{_ROUND_MARK.format(n=i)}\n## Round {i}\n\n{text.strip()}\n"
                for i, text in enumerate(rounds, 1)]
    return head + "".join(sections)


def parse_feedback(text: str) -> list[str]:
    """The rounds of a feedback file written by :func:`render_feedback`, oldest first."""
    parts = _ROUND_MARK_RE.split(text)[1:]  # [n, body, n, body, ...]
    rounds = []
    for body in parts[1::2]:
        body = body.lstrip("\n")
        if body.startswith("## Round "):
            body = body.split("\n", 1)[1] if "\n" in body else ""
        rounds.append(body.strip())
    return rounds


def prepare_feedback(task: AgentTask) -> list[str]:
    """Write ``task.feedback_relpath`` in the worktree; return every round's feedback.

    The earlier rounds come from the file as committed at ``task.feedback_from``
    (the previous round's commit) and the new one from ``task.new_feedback``, so
    the activity input carries one round's feedback, never all of them. A task
    from older workflow code carries every round inline in ``task.feedback``.
    The result is the same on every attempt of a round (nothing is read from the
    work tree). No file is written when there is no feedback yet.

    Raises:
        GitError: git failed.
    """
    worktree = Path(task.worktree)
    if task.new_feedback or task.feedback_from:
        earlier = ""
        if task.feedback_from:
            # a round committed by older code kept it in specs/<branch>/ whatever the output
            for relpath in dict.fromkeys([task.feedback_relpath,
                                          task.legacy_feedback_relpath]):
                earlier = git(worktree, "show", f"{task.feedback_from}:{relpath}",
                              check=False)
                if earlier:
                    break
        rounds = parse_feedback(earlier) + ([task.new_feedback] if task.new_feedback else [])
    else:
        rounds = list(task.feedback)
    if rounds:
        path = worktree / task.feedback_relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_feedback(rounds, task.spec_relpath))
    return rounds


class AgentRunner(Protocol):
    """Something that writes ``task.spec_relpath`` inside ``task.worktree``."""

    name: str

    async def run(self, task: AgentTask, fence: Fence | None = None) -> LlmUsage | None:
        """Run the agent to completion; return the LLM usage when the runner knows
        it (else None); raise ApplicationError on failure. A runner that starts a
        process passes ``fence`` to the subprocess layer."""


def repository_context(worktree: Path, max_files: int = 200, max_readme: int = 4000) -> str:
    """The README (truncated to ``max_readme`` characters) and tracked file list of a
    worktree, as prompt context."""
    files = git(worktree, "ls-files").splitlines()
    tree = "\n".join(files[:max_files]) + ("\n..." if len(files) > max_files else "")
    readme = next((worktree / n for n in ("README.md", "README.rst", "README")
                   if (worktree / n).is_file()), None)
    readme_text = readme.read_text(errors="replace")[:max_readme] if readme else "(no README)"
    return f"### README\n{readme_text}\n\n### Files\n{tree or '(empty)'}"


def render_prompt(task: AgentTask) -> str:
    """The spec prompt of ``prompts/sdlc_spec.md`` filled in for ``task``.

    The reviewers' feedback is not inlined (a prompt goes into argv and the
    environment, whose strings the kernel limits to 128 KiB each): the prompt
    names the feedback file, ``task.feedback_relpath``, instead.
    """
    feedback = (f"{len(task.feedback)} round(s) of feedback are in the file "
                f"`{task.feedback_relpath}` (also in ${FEEDBACK_FILE_ENV}), newest last: "
                "read it first and address every point." if task.feedback else "(none)")
    # a workstream step's own instructions replace the SDLC spec request
    template = (PROMPTS / ("agent_task.md" if task.instructions else "sdlc_spec.md")
                ).read_text()
    return template.format(
        spec_path=task.spec_relpath, title=task.title, description=task.description,
        instructions=task.instructions, feedback=feedback, branch=task.branch,
        context=repository_context(Path(task.worktree)),
    )


class OfflineRunner:
    """Writes a structured spec derived deterministically from the request.

    No model is called; the file says so. Used by default and by the demo.
    """

    name = "offline"

    async def run(self, task: AgentTask, fence: Fence | None = None) -> None:
        """Write the spec for ``task`` (with ``task.instructions``: a document that
        restates them); the same task always gives the same file."""
        path = Path(task.worktree) / task.spec_relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if task.instructions:
            addressed = [f"- Round {i}: {f}" for i, f in enumerate(task.feedback, 1)]
            path.write_text("\n".join([
                "---", "provider: offline", f"round: {task.round}",
                f"workflow_id: {task.workflow_id}", "---", f"# {task.title}", "",
                "> Written by the offline agent runner: it restates the instructions;",
                "> no language model was called.", "", "## Instructions",
                task.instructions.strip(), "", "## Reviewer feedback",
                *(addressed or ["- none yet"])]) + "\n")
            return
        sentences = [s.strip() for s in task.description.replace("\n", " ").split(".")
                     if s.strip()] or [task.title]
        requirements = "\n".join(
            f"- **FR-{i:03d}**: The system shall {s[0].lower() + s[1:]}."
            for i, s in enumerate(sentences, 1)
        )
        criteria = "\n".join(
            f"{i}. Given the feature is enabled, when a user relies on FR-{i:03d}, "
            "then the documented behaviour is observed."
            for i in range(1, len(sentences) + 1)
        )
        addressed = "\n".join(
            f"- Round {i} feedback: \"{f}\" — addressed by an added requirement below."
            for i, f in enumerate(task.feedback, 1)
        )
        extra = "\n".join(
            f"- **FR-{len(sentences) + i:03d}**: The system shall satisfy the reviewer's "
            f"request: {f.rstrip('.')}."
            for i, f in enumerate(task.feedback, 1)
        )
        lines = [
            "---", "provider: offline", f"branch: {task.branch}", f"round: {task.round}",
            f"workflow_id: {task.workflow_id}", "---",
            f"# Feature specification: {task.title}", "",
            "> Written by the offline agent runner: derived deterministically from the",
            "> request; no language model was called.", "",
            "## Summary", task.description.strip() or task.title, "",
            "## User stories",
            f"- As a user, I want {task.title[0].lower() + task.title[1:]}, so that the need "
            "described in the summary is met.", "",
            "## Functional requirements", requirements, *([extra] if extra else []), "",
            "## Acceptance criteria", criteria, "",
            "## Review history", addressed or "- First round: no feedback yet.", "",
            "## Out of scope", "- Anything the request above does not mention.", "",
            "## Open questions", "- None recorded by the offline runner.",
        ]
        path.write_text("\n".join(lines) + "\n")


class AnthropicRunner:
    """Writes the spec through the Messages API (the LLM layer's Anthropic provider):
    prompt ``prompts/sdlc_spec_api.md`` with the request, the reviewers' feedback and
    the worktree's README and file tree; the answer is the spec. Its usage goes to
    the SDLC workflow's ledger (phase ``sdlc_spec``).

    Args:
        provider: an ``activities.llm.AnthropicProvider`` (or any LLM provider).
        max_tokens: the most tokens the spec may take.
    """

    name = "anthropic"
    phase = "sdlc_spec"
    template = "sdlc_spec_api.md"
    task_template = "agent_task_api.md"  # a workstream step with its own instructions

    def __init__(self, provider: LlmProvider, max_tokens: int = 8000) -> None:
        self.provider = provider
        self.max_tokens = max_tokens

    async def run(self, task: AgentTask, fence: Fence | None = None) -> LlmUsage:
        """Ask for the spec and write it to ``task.spec_relpath``.

        Raises:
            ApplicationError: the API call failed (see ``activities.llm.api_error``),
                or the answer was empty (retryable).
        """
        feedback = "\n".join(f"- Round {i}: {f}" for i, f in enumerate(task.feedback, 1))
        variables = {"title": task.title, "description": task.description,
                     "instructions": task.instructions,
                     "feedback": feedback or "(none)", "branch": task.branch,
                     "spec_path": task.spec_relpath,
                     "context": repository_context(Path(task.worktree))}
        template = self.task_template if task.instructions else self.template
        request = LlmRequest(phase=self.phase, template=template, variables=variables,
                             max_tokens=self.max_tokens)
        response = await self.provider.complete(request, render_template(template,
                                                                         variables))
        spec = response.text.strip()
        if spec.startswith("```"):  # a model that fenced the whole document
            spec = spec.split("\n", 1)[-1].rsplit("```", 1)[0].strip()
        if not spec:
            raise ApplicationError("the model answered with an empty spec", type="SpecMissing")
        path = Path(task.worktree) / task.spec_relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec + "\n")
        return response.usage


class CommandRunner:
    """Runs a shell command in the worktree with the request on stdin and in the
    environment (``SDLC_TITLE``, ``SDLC_DESCRIPTION``, ``SDLC_SPEC_PATH``,
    ``SDLC_BRANCH``, ``SDLC_ROUND``, ``SDLC_WORKFLOW_ID``, ``SDLC_PROMPT``). The
    reviewers' feedback is a file, never a variable: ``SDLC_FEEDBACK_FILE`` is
    its absolute path (see :func:`prepare_feedback`), or empty in round 1. The
    rest of its environment comes from the allowlist of
    :func:`activities.secrets.subprocess_env`: ``PATH``, ``HOME``, ``LANG``... and
    only the secrets in ``grants``.

    Args:
        command: a shell command line (run with ``/bin/sh -c``).
        grants: names of worker environment variables (secrets) the agent may
            see (AGENT_SECRET_ENV).
    """

    name = "command"

    def __init__(self, command: str, grants: Sequence[str] = ()) -> None:
        self.command = command
        self.grants = list(grants)

    def argv(self, task: AgentTask) -> list[str]:
        """The process to start for ``task``."""
        return ["/bin/sh", "-c", self.command]

    async def run(self, task: AgentTask, fence: Fence | None = None) -> None:
        """Run the command (through the subprocess layer, fenced by ``fence``); a
        non-zero exit raises a retryable ApplicationError with the tail of its output."""
        prompt = render_prompt(task)
        env = subprocess_env({
            "SDLC_TITLE": task.title,
            "SDLC_DESCRIPTION": task.description,
            FEEDBACK_FILE_ENV: (str(Path(task.worktree) / task.feedback_relpath)
                                if task.feedback else ""),
            "SDLC_SPEC_PATH": task.spec_relpath,
            "SDLC_INSTRUCTIONS": task.instructions,
            "SDLC_BRANCH": task.branch,
            "SDLC_ROUND": str(task.round),
            "SDLC_WORKFLOW_ID": task.workflow_id,
            "SDLC_PROMPT": prompt,
        }, grants=self.grants)
        code, output = await run_process(
            self.argv(task), cwd=Path(task.worktree), env=env, stdin=prompt.encode(),
            timeout=task.timeout_seconds, fence=fence,
        )
        if code != 0:
            raise ApplicationError(
                f"agent {self.name!r} exited with code {code}: {output[-2000:]}",
                type="AgentFailed",
            )


class ClaudeRunner(CommandRunner):
    """The Claude Code CLI in print mode, allowed to edit files in the worktree.

    It is granted ``ANTHROPIC_API_KEY`` (Claude Code's credential) besides ``grants``.

    Args:
        executable: the ``claude`` executable (name on PATH or path).
        grants: more secret names it may see (AGENT_SECRET_ENV).
    """

    name = "claude"

    def __init__(self, executable: str = "claude", grants: Sequence[str] = ()) -> None:
        super().__init__(command="", grants=["ANTHROPIC_API_KEY", *grants])
        self.executable = executable

    def argv(self, task: AgentTask) -> list[str]:
        """``claude -p PROMPT --permission-mode acceptEdits``."""
        exe = shutil.which(self.executable)
        if exe is None:
            raise ApplicationError(
                f"the claude CLI ({self.executable!r}) is not installed or not on PATH; "
                "install Claude Code or set AGENT_RUNNER=offline",
                type="AgentUnavailable", non_retryable=True,
            )
        return [exe, "-p", render_prompt(task), "--permission-mode", "acceptEdits"]


class AgentActivities:
    """The ``run_agent`` activity, with the runners this worker offers.

    Args:
        runners: runner name -> runner.
        default_runner: used when a task names none.
        scrubber: the worker's secret values; a spec the agent wrote with one in it
            is rewritten with ``***`` before it is committed.
    """

    def __init__(self, runners: Mapping[str, AgentRunner], default_runner: str,
                 scrubber: Scrubber | None = None) -> None:
        if default_runner not in runners:
            raise ValueError(f"default agent runner {default_runner!r} is not among "
                             f"{sorted(runners)}")
        self.runners = dict(runners)
        self.default_runner = default_runner
        self.scrubber = scrubber

    @activity.defn(name="run_agent")
    async def run_agent(self, task: AgentTask) -> LlmArtifactRef:
        """Run the agent for one spec round and commit its spec.

        Returns:
            The committed spec: absolute path, SHA-256, size, commit SHA and the
            LLM usage when the runner reports one (the ``anthropic`` runner does).

        Raises:
            ApplicationError: unknown runner (non-retryable); the agent failed,
                timed out or wrote no spec (retryable by the workflow's policy;
                non-retryable with ``task.own_failures_final``, details
                ``{"attempt", "infra_retries"}``).
        """
        try:
            return await self._run_agent(task)
        except ApplicationError as err:
            if not task.own_failures_final or err.non_retryable:
                raise
            attempt = activity.info().attempt
            raise ApplicationError(err.message, {"attempt": attempt,
                                                 "infra_retries": attempt - 1},
                                   type=err.type, non_retryable=True) from None

    async def _run_agent(self, task: AgentTask) -> LlmArtifactRef:
        name = task.runner or self.default_runner
        runner = self.runners.get(name)
        if runner is None:
            raise ApplicationError(
                f"agent runner {name!r} is not available on this worker "
                f"(available: {', '.join(sorted(self.runners))}); "
                + ("set AGENT_COMMAND in the worker's environment and restart the worker"
                   if name == "command" else
                   "set ANTHROPIC_API_KEY in the worker's environment and restart the worker"
                   if name == "anthropic" else
                   "pick an available runner (--agent), or configure the worker for it"),
                type="AgentUnavailable", non_retryable=True,
            )
        worktree = Path(task.worktree)
        problem = output_path_problem(task.output_path) if task.output_path else None
        if problem is None and not (worktree / task.spec_relpath).resolve().is_relative_to(
                worktree.resolve()):
            problem = f"output {task.output_path!r} leads outside the workspace"
        if problem:
            raise ApplicationError(f"agent step: {problem}", type="InvalidStep",
                                   non_retryable=True)
        activity.logger.info("agent %s writing %s (round %d)", name, task.spec_relpath,
                             task.round)
        fence = Fence(await asyncio.to_thread(fence_dir, worktree),
                      task.fence_key or f"agent-round-{task.round}", attempt_owner())
        await asyncio.to_thread(fence.take)
        # every round's feedback, for the runner only: never sent back into history
        task = task.model_copy(update={"feedback": await asyncio.to_thread(prepare_feedback,
                                                                           task)})
        usage = await runner.run(task, fence)
        spec = worktree / task.spec_relpath
        if not spec.is_file() or not spec.read_text(errors="replace").strip():
            raise ApplicationError(
                f"agent {name!r} finished without writing {task.spec_relpath}",
                type="SpecMissing",
            )
        if self.scrubber:
            raw = spec.read_bytes()
            if (clean := self.scrubber.data(raw)) != raw:
                spec.write_bytes(clean)

        def commit() -> str:
            with fence.owned():  # a later attempt took over: commit nothing
                if task.feedback:  # committed beside the spec, as the agent was given it
                    prepare_feedback(task)
                    git(worktree, "add", "--", task.feedback_relpath)
                what = "agent" if task.instructions or task.output_path else "spec"
                return commit_round(
                    worktree, task.spec_relpath, f"{what}: {task.title} (round {task.round})",
                    {"Workflow-Id": task.workflow_id, "Spec-Round": str(task.round),
                     "Agent-Runner": name})

        sha = await asyncio.to_thread(commit)
        return LlmArtifactRef(**file_ref(spec, commit=sha).model_dump(), usage=usage)
