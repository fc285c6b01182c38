"""Tool adapters of the workstream engine, its git handoff artifacts and their check.

* ``ws_check_run``: the worker's authority on tools: refuses a run whose router
  config or python callables this worker does not allow (before anything runs).
* ``ws_init_workspace``: a fresh git repository as the run's workspace (when the
  spec names no repository; otherwise the run uses a worktree of it).
* ``ws_run_shell`` / ``ws_run_python`` / ``ws_run_noop``: run one step. Shell (and
  python, see ``activities/python_step.py``) steps
  run ``argv`` or ``script`` in the workspace in their own process group,
  heartbeating; cancellation and timeouts kill the group; stdout and stderr go to
  the artifact store; a non-zero exit raises ``ApplicationError`` of type
  ``ExitCode<N>`` (so a step's retry policy can name exit codes that never retry).
* ``ws_commit_handoff``: write one ``handoff-artifact`` v1 JSON file and commit it,
  one commit per event, with the workflow and run IDs in commit trailers.
* ``ws_merge``: merge the run's branch into the base branch.

:func:`verify_chain` checks a run's chain of handoff commits (``workstream verify``).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.agents import parse_feedback, render_feedback
from activities.artifacts import ArtifactStore
from activities.git import (
    FENCE_DIR,
    GitError,
    commit_file,
    find_commit,
    git,
    init_repository,
    merge_branch,
    trailer_log,
)
from activities.processes import (
    Fence,
    ProcessTimeout,
    attempt_owner,
    kill_fenced,
    run_process_split,
)
from activities.python_step import EXIT_CANNOT_IMPORT, EXIT_NOT_DEFINED_HERE
from activities.secrets import subprocess_env
from models.common import ArtifactRef
from models.workstream import (
    HANDOFF_SCHEMA,
    HANDOFF_SCHEMA_VERSION,
    HandoffInput,
    MergeInput,
    StepOutput,
    StepTask,
    ToolAuthority,
    ToolSpec,
    Workspace,
    WorkspaceInput,
    WorkstreamInput,
)

HANDOFF_DIR = ".workstream/handoffs"
FEEDBACK_FILE_ENV = "WORKSTREAM_FEEDBACK_FILE"
FEEDBACK_DIR = "orchestrator-feedback"  # in the workspace's git directory
TRAILER_WORKFLOW = "Workstream-Workflow-Id"
TRAILER_RUN = "Workstream-Run-Id"
TRAILER_SEQUENCE = "Handoff-Sequence"
TRAILER_PATH = "Handoff-Path"
TRAILER_SHA = "Handoff-Sha256"
MAX_INLINE_RESULT = 2048  # bytes of a python step's JSON result kept in history


def digest(data: Any) -> str:
    """SHA-256 hex of ``data`` as canonical JSON (sorted keys, no spaces)."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _attempt(task: StepTask) -> tuple[int, int]:
    """(attempt number of the running activity within its step execution,
    infrastructure retries inside this activity). With ``own_failures_final`` every
    earlier attempt of this activity was lost, not failed (its own failures are
    non-retryable), so they are all infrastructure retries."""
    info = activity.info()
    infra = info.attempt - 1 if task.own_failures_final else 0
    return task.attempt_base + info.attempt, infra


def exit_code_error_type(code: int) -> str:
    """The ApplicationError type of a shell step that exited with ``code``."""
    return f"ExitCode{code}"


PYTHON_STEP_RUNNER = Path(__file__).with_name("python_step.py")
TAIL_LINES = 20  # last lines of a failed step's output kept in its error
MAX_TAIL_CHARS = 3000
_SUMMARY_RES = [
    # pytest: "==== 2 failed, 5 passed in 0.31s ====" (or without the rules, with -q)
    re.compile(r"^=*\s*((?:\d+ (?:failed|passed|errors?|skipped|xfailed|xpassed|"
               r"deselected|warnings?|rerun)(?:, )?)+ in [\d.]+s(?: \([^)]*\))?)\s*=*$"),
    re.compile(r"^=*\s*(no tests ran in [\d.]+s)\s*=*$"),
    # unittest: "FAILED (failures=1, errors=2)"; "OK" is preceded by "Ran N tests"
    re.compile(r"^(FAILED \((?:failures|errors|skipped|expected failures)=.*\))$"),
    # go test, cargo test, jest, mocha...
    re.compile(r"^(test result: .*)$"), re.compile(r"^(Tests:\s+.*\d+ total)$"),
    re.compile(r"^(FAIL\s+\S+.*)$"), re.compile(r"^(\d+ (?:passing|failing).*)$"),
]


def test_summary(text: str) -> str:
    """The test runner's summary line in ``text`` (the last one found), e.g. pytest's
    ``2 failed, 5 passed in 0.31s`` or unittest's ``FAILED (failures=1)``; "" when
    there is none."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        for pattern in _SUMMARY_RES:
            if m := pattern.match(line):
                return m.group(1)
    return ""


def failure_excerpt(out: str, err: str, lines: int = TAIL_LINES) -> tuple[str, str]:
    """What a report shows of a failed step: (the test runner's summary line of
    stdout or stderr, or ""; the last ``lines`` lines of stdout then of stderr, at
    most MAX_TAIL_CHARS characters, keeping the end)."""
    summary = test_summary(out) or test_summary(err)
    parts = ["\n".join(t.rstrip().splitlines()[-lines:]) for t in (out, err) if t.strip()]
    return summary, "\n".join(parts)[-MAX_TAIL_CHARS:]


def worker_import_path() -> list[str]:
    """The worker's ``sys.path`` as absolute paths (a python step's subprocess
    imports what the worker could, after the workspace)."""
    return [os.path.abspath(p or os.getcwd()) for p in sys.path]


class WorkstreamActivities:
    """The workstream adapters.

    Args:
        workspace_root: fresh run workspaces are made as ``<root>/<workflow ID>``.
        store: the artifact store (stdout, stderr and results of steps).
        authority: the tools, routes and python modules this worker allows
            (see :class:`ToolAuthority`).
    """

    def __init__(self, workspace_root: Path, store: ArtifactStore,
                 authority: ToolAuthority) -> None:
        self.workspace_root = workspace_root
        self.store = store
        self.authority = authority
        self._git_dirs: dict[Path, Path] = {}

    def _tool(self, task: StepTask) -> ToolSpec:
        """The tool definition a step runs with: the run's, once this worker's
        authority accepts it (checked again here: a run started before the worker's
        configuration changed is held to the new one).

        Raises:
            ApplicationError: (non-retryable, type ``ToolRefused``) the worker
                does not allow the tool as the run defines it.
        """
        problem = self.authority.tool_problem(task.tool, task.spec)
        if problem:
            raise ApplicationError(f"step {task.step!r} refused by the worker: {problem}",
                                   type="ToolRefused", non_retryable=True)
        return task.spec

    @activity.defn(name="ws_check_run")
    def check_run(self, inp: WorkstreamInput) -> None:
        """Refuse a run this worker does not allow, before anything runs: tools or
        routes its router config does not define as the run does, and python
        callables outside WORKSTREAM_PYTHON_MODULES.

        Raises:
            ApplicationError: (non-retryable, type ``WorkstreamRefused``) the
                message lists every problem.
        """
        problems = self.authority.problems(inp)
        if problems:
            raise ApplicationError("refused by the worker's tool configuration: "
                                   + "; ".join(problems),
                                   type="WorkstreamRefused", non_retryable=True)

    def _artifact_dir(self, task: StepTask) -> str:
        return (f"workstream/{task.workflow_id}/{task.step}/"
                f"{task.number}-a{task.attempt_base + activity.info().attempt}")

    def _git_dir(self, ws: Path) -> Path:
        if ws not in self._git_dirs:
            self._git_dirs[ws] = Path(git(ws, "rev-parse", "--absolute-git-dir"))
        return self._git_dirs[ws]

    def _feedback_file(self, task: StepTask) -> str:
        """Write the step's feedback file and return its path ("" when the step was
        never revised).

        The file is ``<workspace git dir>/orchestrator-feedback/<step>.md``
        (private to the workspace, outside the work tree, so no commit or
        ``git status`` sees it). ``task.new_feedback``, the review of execution
        ``number - 1``, replaces that round's section and drops any later one,
        so every attempt of an execution writes the same file.
        """
        path = self._git_dir(Path(task.workspace)) / FEEDBACK_DIR / f"{task.step}.md"
        if not task.new_feedback:
            return str(path) if task.number > 1 and path.is_file() else ""
        rounds = parse_feedback(path.read_text()) if path.is_file() else []
        rounds = rounds[:max(task.number - 2, 0)] + [task.new_feedback]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_feedback(rounds, f"step {task.step}'s result"))
        return str(path)

    @activity.defn(name="ws_init_workspace")
    def init_workspace(self, inp: WorkspaceInput) -> Workspace:
        """A fresh git repository for a run without a repository, on branch
        ``workstream/<workflow ID>`` (reused when it exists)."""
        path = (self.workspace_root / inp.workflow_id).resolve()
        init_repository(path, inp.base_branch)
        branch = f"workstream/{inp.workflow_id}"
        if git(path, "rev-parse", "--abbrev-ref", "HEAD") != branch:
            exists = git(path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}",
                         check=False)
            git(path, "checkout", "-q", *([] if exists else ["-b"]), branch)
        return Workspace(path=str(path), branch=branch, repo_path=str(path),
                         base_branch=inp.base_branch)

    @activity.defn(name="ws_kill_processes")
    def kill_processes(self, ws: Workspace) -> list[int]:
        """Kill the process groups still recorded by the fences of the workspace
        (:func:`activities.processes.kill_fenced`), e.g. left by an attempt whose
        worker died before the run was cancelled. Returns the pgids killed."""
        return kill_fenced(self._git_dir(Path(ws.path)) / FENCE_DIR)

    async def _step_env(self, task: StepTask, tool: ToolSpec) -> dict[str, str]:
        """The environment of a step's process: the allowlist of
        :func:`activities.secrets.subprocess_env` (``PATH``, ``HOME``, ``LANG``...),
        the secrets the worker grants the tool, the tool's ``env``, ``inputs.env``
        and the ``WORKSTREAM_*`` variables (never the rest of the worker's)."""
        return subprocess_env(
            {**{k: str(v) for k, v in (task.inputs.get("env") or {}).items()},
             "WORKSTREAM_WORKFLOW_ID": task.workflow_id, "WORKSTREAM_STEP": task.step,
             "WORKSTREAM_ATTEMPT": str(_attempt(task)[0]), "WORKSTREAM_TOOL": task.tool,
             "WORKSTREAM_SPEC_DIR": task.spec_dir, "WORKSTREAM_WORKSPACE": task.workspace,
             FEEDBACK_FILE_ENV: await asyncio.to_thread(self._feedback_file, task)},
            tool_env=tool.env, grants=self.authority.granted_secrets(task.tool, task.spec))

    async def _run_step_process(self, task: StepTask, argv: list[str], env: dict[str, str],
                                stdin: bytes = b"") -> tuple[int, list[ArtifactRef], str, str]:
        """Run a step's process in the workspace through the subprocess layer, fenced
        per step execution (an earlier attempt's process group still alive in the
        workspace is killed first); store its stdout and stderr as artifacts.

        Returns:
            (exit code, [stdout ref, stderr ref], stdout, stderr).

        Raises:
            ApplicationError: (type ``StepTimeout``) it ran longer than ``task.timeout``
                and was killed; like a non-zero exit's, its details hold the attempt,
                the outputs written until then (as artifacts), the test runner's
                ``summary`` line and the output's last lines (``tail``), and its
                message ends with the last line written.
        """
        attempt, infra = _attempt(task)
        ws = Path(task.workspace)
        fence = Fence(await asyncio.to_thread(self._git_dir, ws) / FENCE_DIR,
                      f"step-{task.step}-{task.number}", attempt_owner())
        try:
            code, out, err = await run_process_split(
                argv, cwd=ws, env=env, stdin=stdin, timeout=task.timeout,
                label=f"step {task.step}", fence=fence)
        except ProcessTimeout as timeout:
            outputs = self._store_outputs(task, timeout.stdout, timeout.stderr)
            summary, tail = failure_excerpt(timeout.stdout, timeout.stderr)
            last = summary or (tail.splitlines()[-1] if tail else "")
            raise ApplicationError(
                timeout.message + (f"; last output: {last[:500]}" if last else ""),
                {"attempt": attempt, "infra_retries": infra,
                 "outputs": [o.model_dump() for o in outputs], "summary": summary,
                 "tail": tail},
                type="StepTimeout", non_retryable=task.own_failures_final) from None
        return code, self._store_outputs(task, out, err), out, err

    def _store_outputs(self, task: StepTask, out: str, err: str) -> list[ArtifactRef]:
        """Write a step attempt's stdout and stderr to the artifact store (scrubbed);
        return [stdout ref, stderr ref]."""
        base = self._artifact_dir(task)
        return [self.store.write(f"{base}/stdout.txt", out),
                self.store.write(f"{base}/stderr.txt", err)]

    @activity.defn(name="ws_run_shell")
    async def run_shell(self, task: StepTask) -> StepOutput:
        """Run a shell step: ``inputs.argv`` (list) or ``inputs.script`` (run with
        ``/bin/sh -e -c``), cwd = the workspace, environment from :meth:`_step_env`.
        After a revise, ``WORKSTREAM_FEEDBACK_FILE`` is the path of the step's
        feedback file (every reviewer comment on this step so far, one section per
        execution reviewed; see :meth:`_feedback_file`), else empty. The process
        runs through the subprocess layer (:meth:`_run_step_process`).

        Raises:
            ApplicationError: no argv or script (non-retryable); the tool is refused
                (non-retryable, ``ToolRefused``); exit code N != 0 (type
                ``ExitCode<N>``, details: attempt, exit code, outputs, the test
                runner's ``summary`` line and the output's last lines, ``tail``;
                see :func:`failure_excerpt`); timeout (``StepTimeout``, the same
                details but no exit code).
        """
        tool = self._tool(task)
        attempt, infra = _attempt(task)
        argv = task.inputs.get("argv")
        script = task.inputs.get("script")
        if argv is None and script is None:
            raise ApplicationError(f"shell step {task.step!r} needs inputs.argv or "
                                   "inputs.script", type="InvalidStep", non_retryable=True)
        if argv is None:
            argv = ["/bin/sh", "-e", "-c", str(script)]
        code, outputs, out, err = await self._run_step_process(
            task, [str(a) for a in argv], await self._step_env(task, tool))
        if code != 0:
            summary, tail = failure_excerpt(out, err)
            last = summary or (tail.splitlines()[-1] if tail else "no output")
            raise ApplicationError(
                f"step {task.step!r} on {task.tool} exited with code {code}: {last[:500]}",
                {"attempt": attempt, "exit_code": code, "infra_retries": infra,
                 "outputs": [o.model_dump() for o in outputs], "summary": summary,
                 "tail": tail},
                type=exit_code_error_type(code), non_retryable=task.own_failures_final)
        return StepOutput(attempt=attempt, infra_retries=infra, exit_code=0, outputs=outputs)

    @activity.defn(name="ws_run_python")
    async def run_python(self, task: StepTask) -> StepOutput:
        """Call ``inputs.callable`` (``package.module:function``) with ``inputs.kwargs``
        in a subprocess (the worker's interpreter, isolated mode, through the
        subprocess layer like a shell step: own process group, killed with its
        attempt): cwd = the run's workspace, ``sys.path`` = the workspace, then the
        worker's import path (so the module may live in the workspace), environment
        from :meth:`_step_env` (``WORKSTREAM_WORKSPACE`` is the workspace). A
        coroutine function is run with ``asyncio.run``. The JSON of its return value
        is stored as ``result.json`` (and returned when small), its stdout and
        stderr beside it (see ``activities/python_step.py``).

        Only functions defined in a module of WORKSTREAM_PYTHON_MODULES may be
        called (a name the module merely imports, e.g. ``os.system``, is refused).

        Raises:
            ApplicationError: the callable is not allowed (non-retryable,
                ``ToolRefused``) or cannot be imported (non-retryable,
                ``InvalidStep``); it raised (type ``PythonStepFailed``, details as a
                failed shell step's); timeout (``StepTimeout``, details as a
                failed shell step's but no exit code).
        """
        tool = self._tool(task)
        target = str(task.inputs.get("callable", ""))
        if problem := self.authority.python_problem(target):
            raise ApplicationError(f"python step {task.step!r} refused by the worker: "
                                   f"{problem}", type="ToolRefused", non_retryable=True)
        attempt, infra = _attempt(task)
        with tempfile.TemporaryDirectory(prefix="ws-python-") as tmp:
            result_path = Path(tmp) / "result.json"
            request = {"callable": target, "kwargs": dict(task.inputs.get("kwargs") or {}),
                       "paths": [task.workspace, *worker_import_path()],
                       "result": str(result_path)}
            code, outputs, out, err = await self._run_step_process(
                task, [sys.executable, "-I", str(PYTHON_STEP_RUNNER)],
                await self._step_env(task, tool),
                stdin=json.dumps(request, default=str).encode())
            raw = result_path.read_text(encoding="utf-8") if code == 0 else ""
        reason = (err.strip().splitlines() or ["no output"])[-1]
        if code == EXIT_CANNOT_IMPORT:
            raise ApplicationError(
                f"python step {task.step!r}: {reason}; give inputs.callable as "
                "'package.module:function' of a module in the workspace or on the "
                "worker's path", type="InvalidStep", non_retryable=True)
        if code == EXIT_NOT_DEFINED_HERE:
            raise ApplicationError(f"python step {task.step!r} refused by the worker: "
                                   f"{reason}", type="ToolRefused", non_retryable=True)
        if code != 0:
            summary, tail = failure_excerpt(out, err)
            raise ApplicationError(
                f"python step {task.step!r}: {target} raised {reason[:500]}",
                {"attempt": attempt, "exit_code": code, "infra_retries": infra,
                 "outputs": [o.model_dump() for o in outputs], "summary": summary,
                 "tail": tail},
                type="PythonStepFailed", non_retryable=task.own_failures_final)
        ref = self.store.write(f"{self._artifact_dir(task)}/result.json", raw)
        return StepOutput(attempt=attempt, infra_retries=infra, outputs=[ref, *outputs],
                          result=json.loads(raw) if len(raw) <= MAX_INLINE_RESULT else None)

    @activity.defn(name="ws_run_noop")
    async def run_noop(self, task: StepTask) -> StepOutput:
        """Do nothing (benchmarks and placeholders)."""
        attempt, infra = _attempt(task)
        return StepOutput(attempt=attempt, infra_retries=infra)

    @activity.defn(name="ws_commit_handoff")
    def commit_handoff(self, inp: HandoffInput) -> ArtifactRef:
        """Write the ``handoff-artifact`` v1 JSON of one finished step attempt to
        ``.workstream/handoffs/<sequence>-<step>-<number>.json`` and commit it with
        trailers ``Workstream-Workflow-Id``, ``Workstream-Run-Id``,
        ``Handoff-Sequence``, ``Handoff-Path`` and ``Handoff-Sha256``.

        Commits of parallel steps are serialized by a lock file in the git
        directory; a retried attempt finds and returns its earlier commit.

        Returns:
            The artifact (path, SHA-256, size, commit SHA).
        """
        ws = Path(inp.workspace)
        att = inp.attempt
        rel = f"{HANDOFF_DIR}/{inp.sequence:04d}-{att.step}-{att.number}.json"
        doc = {
            "schema": HANDOFF_SCHEMA, "version": HANDOFF_SCHEMA_VERSION,
            "workflow_id": inp.workflow_id, "run_id": inp.run_id, "sequence": inp.sequence,
            "step": att.step, "attempt": att.number, "temporal_attempts": att.attempts,
            "tool": att.tool, "outcome": att.outcome, "exit_code": att.exit_code,
            "error": att.error, "inputs_digest": inp.inputs_digest,
            "outputs": [o.model_dump(mode="json") for o in att.outputs],
            "timings": {"started_at": att.started_at.isoformat(),
                        "finished_at": att.finished_at.isoformat() if att.finished_at else None,
                        "seconds": att.seconds},
            "previous_sha256": inp.previous_sha256,
        }
        data = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        sha = hashlib.sha256(data.encode()).hexdigest()
        trailers = {TRAILER_WORKFLOW: inp.workflow_id, TRAILER_RUN: inp.run_id,
                    TRAILER_SEQUENCE: str(inp.sequence), TRAILER_PATH: rel, TRAILER_SHA: sha}
        lock_path = self._git_dir(ws) / "workstream.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = find_commit(ws, "HEAD", {TRAILER_WORKFLOW: inp.workflow_id,
                                            TRAILER_SEQUENCE: str(inp.sequence)})
            if done is None:
                target = ws / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data)
                trailer_text = "\n".join(f"{k}: {v}" for k, v in trailers.items())
                done = commit_file(ws, rel, f"handoff: {att.step} execution {att.number} "
                                   f"{att.outcome}\n\n{trailer_text}\n")
        return ArtifactRef(path=str(ws / rel), sha256=sha, bytes=len(data.encode()),
                           commit=done)

    @activity.defn(name="ws_merge")
    def merge(self, inp: MergeInput) -> str:
        """Merge the run's branch into the base branch; return the base's new SHA.

        Raises:
            ApplicationError: (non-retryable) the merge conflicts or the base
                worktree is not clean; the message has git's reason.
        """
        try:
            return merge_branch(Path(inp.repo_path), inp.branch, inp.base_branch,
                                f"Merge workstream {inp.branch}\n\n"
                                f"{TRAILER_WORKFLOW}: {inp.workflow_id}\n")
        except GitError as err:
            raise ApplicationError(f"cannot merge {inp.branch} into {inp.base_branch}: {err}",
                                   type="MergeFailed", non_retryable=True) from None


class ChainCheck(BaseModel):
    """What :func:`verify_chain` found.

    Attributes:
        ok: the chain is intact.
        checked: handoff commits checked.
        first_bad_commit: SHA of the first commit that breaks the chain, or None.
        problem: what is wrong with it.
    """

    ok: bool
    checked: int
    first_bad_commit: str | None = None
    problem: str = ""


def verify_chain(repo: Path, rev: str, workflow_id: str,
                 expected: list[ArtifactRef] | None = None) -> ChainCheck:
    """Check the handoff commits of ``workflow_id`` reachable from ``rev``.

    Each handoff commit (the one carrying ``Workstream-Workflow-Id: workflow_id``)
    must, in order: carry ``Handoff-Sequence`` 1, 2, 3...; hold at ``Handoff-Path``
    a ``handoff-artifact`` v1 document whose SHA-256 equals ``Handoff-Sha256`` and
    whose ``previous_sha256`` is the previous artifact's SHA-256 (a hash chain);
    match the workflow's own record in ``expected`` (commit SHA and SHA-256) when
    given. No other commit may touch ``.workstream/handoffs/``, and the chain must
    be as long as ``expected``.

    Raises:
        GitError: ``rev`` does not exist in ``repo``.
    """
    chain = [(sha, t) for sha, t in trailer_log(repo, rev)
             if t.get(TRAILER_WORKFLOW) == workflow_id and TRAILER_SEQUENCE in t]
    in_chain = {sha for sha, _ in chain}
    previous = ""
    for i, (sha, t) in enumerate(chain):
        def bad(problem: str, sha: str = sha, i: int = i) -> ChainCheck:
            return ChainCheck(ok=False, checked=i, first_bad_commit=sha, problem=problem)

        if t.get(TRAILER_SEQUENCE) != str(i + 1):
            return bad(f"sequence {t.get(TRAILER_SEQUENCE)} where {i + 1} was expected")
        path = t.get(TRAILER_PATH, "")
        raw = git(repo, "show", f"{sha}:{path}", check=False)
        if not raw:
            return bad(f"the commit lacks its artifact {path!r}")
        data = (raw + "\n").encode()
        actual = hashlib.sha256(data).hexdigest()
        if actual != t.get(TRAILER_SHA):
            return bad(f"{path} has SHA-256 {actual[:12]}, the trailer says "
                       f"{t.get(TRAILER_SHA, '')[:12]}")
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            return bad(f"{path} is not JSON")
        if doc.get("schema") != HANDOFF_SCHEMA or doc.get("version") != HANDOFF_SCHEMA_VERSION:
            return bad(f"{path} is not a {HANDOFF_SCHEMA} v{HANDOFF_SCHEMA_VERSION} document")
        if doc.get("previous_sha256") != previous:
            return bad(f"{path} does not link to the previous artifact")
        if expected is not None:
            if i >= len(expected):
                return bad("the workflow recorded no handoff at this position")
            if expected[i].commit != sha or expected[i].sha256 != actual:
                return bad(f"the workflow recorded commit {(expected[i].commit or '')[:12]} "
                           "here; history was rewritten")
        previous = actual
    touched = git(repo, "log", "--reverse", "--format=%H", rev, "--", HANDOFF_DIR).split()
    for sha in touched:
        if sha not in in_chain:
            other = trailer_log(repo, f"{sha}^!")[0][1].get(TRAILER_WORKFLOW)
            if other is None or other == workflow_id:
                return ChainCheck(ok=False, checked=len(chain), first_bad_commit=sha,
                                  problem="changes handoff artifacts outside the chain")
    if expected is not None and len(chain) < len(expected):
        missing = expected[len(chain)]
        return ChainCheck(ok=False, checked=len(chain), first_bad_commit=missing.commit,
                          problem=f"{len(expected) - len(chain)} recorded handoff commit(s) "
                          f"are missing from {rev}")
    return ChainCheck(ok=True, checked=len(chain))
