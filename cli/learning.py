"""``learn ...``: the learning loop from the command line.

``learn init-db`` and ``learn import`` work on the database directly (no
workflow involved); the others talk to a running LearningLoopWorkflow.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from cli.common import (
    QUERY_TIMEOUT,
    CliError,
    Context,
    checked_workflow_id,
    default_actor,
    json_flag,
    read_text_file,
    start_orchestration,
    visibility_literal,
    with_defaults,
)
from cli.gates import POLL_INTERVAL, query
from cli.keys import reviewer_keys, signed_override
from cli.review import EXIT_UNSUCCESSFUL, ask_line, follow_run, run_outcome
from models.learning import (
    Answer,
    LearningConfig,
    LearningProgress,
    LearningState,
    OpenTest,
    OverrideAck,
    PauseResume,
    PublicItem,
    RemediationRef,
    SetMastery,
    SkipKc,
    SubmitAnswers,
    TeacherOverride,
)
from models.signatures import GITHUB_PREFIX, KEY_PREFIX
from settings import Settings
from temporal_plumbing.search_attributes import ensure_search_attributes
from workflows.gates import GatedWorkflow
from workflows.learning_loop import LearningLoopWorkflow
from workflows.registry import workflow_type
from workflows.search_attributes import STUDENT


def learning_workflow_id(student: str, curriculum: str) -> str:
    """The business key ``learn-<student>-<curriculum>``."""
    return f"learn-{student}-{curriculum}"


def learning_config(settings: Settings, **fields: Any) -> LearningConfig:
    """A LearningConfig with the settings as defaults (explicit fields win)."""
    defaults = {
        "mastery_threshold": settings.learning_mastery_threshold,
        "max_rounds": settings.learning_max_rounds,
        "items_per_test": settings.learning_items_per_test,
        "reminder_after": settings.learning_test_reminder,
        "expire_after": settings.learning_test_expiry,
        "on_expiry": settings.learning_on_expiry,
        "llm_grading": settings.learning_llm_grading,
        # offline, items come from the curriculum's templates and bank only
        "llm_item_generation": settings.effective_llm_provider != "offline",
    }
    return with_defaults(LearningConfig, defaults, fields)


async def start_learning(client: Client, settings: Settings, config: LearningConfig
                         ) -> WorkflowHandle[Any, Any]:
    """Start LearningLoopWorkflow ``learn-<student>-<curriculum>``.

    Raises:
        WorkflowAlreadyStartedError: a loop with that ID exists.
    """
    search_attributes = None
    if await ensure_search_attributes(client):
        search_attributes = TypedSearchAttributes([SearchAttributePair(STUDENT, config.student)])
    return await start_orchestration(
        client, LearningLoopWorkflow.run, LearningState(config=config),
        id=learning_workflow_id(config.student, config.curriculum), settings=settings,
        search_attributes=search_attributes,
        static_summary=f"Learning loop: {config.student} on {config.curriculum}")


def open_database(settings: Settings) -> Any:
    """The learning database of ``DATABASE_URL`` (migrated on first use)."""
    from activities.learning_db import LearningDatabase

    return LearningDatabase(settings.learning_database_url)


# -- commands ---------------------------------------------------------------------


async def cmd_init_db(ctx: Context) -> int:
    """``learn init-db``: run the migrations."""
    from activities.learning_db import current_revision

    db = open_database(ctx.settings)
    await asyncio.to_thread(db.migrate)
    revision = current_revision(db.engine)
    db.dispose()
    ctx.emit({"database": db.engine.url.render_as_string(), "revision": revision},
             f"learning database {db.engine.url.render_as_string()} at revision {revision}")
    return 0


async def cmd_import(ctx: Context) -> int:
    """``learn import FILE``: validate the whole file, then write it in one transaction."""
    from activities.curriculum import CurriculumError, import_curriculum_file

    db = open_database(ctx.settings)
    try:
        spec, counts = await asyncio.to_thread(import_curriculum_file, db, Path(ctx.args.file))
    except CurriculumError as err:
        raise CliError(str(err), code=2) from None
    finally:
        db.dispose()
    ctx.emit({"curriculum": spec.id, **counts},
             f"imported {spec.id}: {counts['knowledge_components']} KCs, "
             f"{counts['prerequisites']} prerequisites, {counts['items']} items")
    return 0


async def cmd_start(ctx: Context) -> int:
    """``learn start --student S --curriculum C``."""
    args = ctx.args
    checked_workflow_id(learning_workflow_id(args.student, args.curriculum))
    from activities.learning_db import Curriculum

    db = open_database(ctx.settings)

    def imported() -> bool:
        with db.session() as session:
            return session.get(Curriculum, args.curriculum) is not None

    if not await asyncio.to_thread(imported):
        raise CliError(f"curriculum {args.curriculum!r} is not imported; import it with "
                       "`python starter.py learn import FILE`")
    config = learning_config(ctx.settings, student=args.student, curriculum=args.curriculum,
                             max_rounds=args.max_rounds, mastery_threshold=args.threshold,
                             items_per_test=args.items_per_test, on_expiry=args.on_expiry,
                             teachers=args.teacher or None)
    handle = await start_learning(await ctx.client(), ctx.settings, config)
    ctx.emit({"workflow_id": handle.id, "run_id": handle.result_run_id,
              "ui": ctx.ui_link(handle.id)},
             f"started {handle.id}\n  web UI: {ctx.ui_link(handle.id)}\n"
             f"  the test: python starter.py learn test {handle.id}")
    if args.follow:
        return await follow_run(ctx, handle)
    return 0


async def _query(ctx: Context, query_fn: Callable[..., Any]) -> Any:
    handle = await ctx.handle(ctx.args.workflow_id)
    return await handle.query(query_fn, rpc_timeout=QUERY_TIMEOUT)


def format_test(test: OpenTest) -> str:
    """The open test as the student reads it."""
    lines = [f"test {test.test_id} on {test.kc} (round {test.round}), expires "
             f"{test.expires_at:%Y-%m-%d %H:%M} UTC"]
    for item in test.items:
        lines.append(f"  [{item.id}] {item.prompt}")
        for n, choice in enumerate(item.choices):
            lines.append(f"      {chr(ord('A') + n)}) {choice}")
        if item.id in test.answers:
            lines.append(f"      answered: {test.answers[item.id]}")
    lines.append(f"answer with: python starter.py learn answer {test.test_id.split('/')[0]} "
                 "--item ID --answer TEXT")
    return "\n".join(lines)


async def cmd_test(ctx: Context) -> int:
    """``learn test ID``: the open test, and where the newest remediation is."""
    progress: LearningProgress = await _query(ctx, LearningLoopWorkflow.state)
    test = progress.open_test
    remediation = progress.last_remediation

    def text() -> str:
        lines = [format_test(test) if test else
                 f"no test is open (the loop is at {progress.phase.value})"]
        if remediation:
            lines.append(f"remediation of round {remediation.round} ({remediation.kc}): "
                         f"{remediation.artifact.path} (`learn remediation "
                         f"{ctx.args.workflow_id}`)")
        return "\n".join(lines)

    ctx.emit({"open_test": test, "last_remediation": remediation}, text)
    return 0


def read_answers_file(path: Path) -> list[Answer]:
    """Answers from YAML/JSON: a mapping ``item: answer`` or a list of
    ``{item, answer}``.

    Raises:
        CliError: unreadable file or another shape.
    """
    text = read_text_file(path, "answers file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CliError(f"cannot read answers from {path}: {err}".replace("\n", " "),
                       code=2) from None
    if isinstance(data, dict):
        return [Answer(item=str(k), answer=str(v)) for k, v in data.items()]
    if isinstance(data, list) and all(isinstance(x, dict) for x in data):
        return [Answer.model_validate({k: str(v) for k, v in x.items()}) for x in data]
    raise CliError(f"{path}: expected a mapping `item: answer` or a list of "
                   "{item, answer}", code=2)


async def cmd_answer(ctx: Context) -> int:
    """``learn answer ID --item I --answer A`` or ``--file answers.yaml`` [--finish]."""
    args = ctx.args
    if args.file:
        answers = read_answers_file(Path(args.file))
    elif args.item and args.answer is not None:
        answers = [Answer(item=args.item, answer=args.answer)]
    elif args.finish:
        answers = []
    else:
        raise CliError("give --item and --answer, or --file answers.yaml (or --finish)", code=2)
    handle = await ctx.handle(args.workflow_id)
    ack = await handle.execute_update(LearningLoopWorkflow.submit_answers, SubmitAnswers(
        answers=answers, finish=args.finish, student=args.student or ""))
    ctx.emit(ack, f"{len(ack.accepted)} answer(s) taken for {ack.test_id}; " + (
        "test closed" if ack.closed else f"still to answer: {', '.join(ack.missing)}"))
    return 0


def current_round(progress: LearningProgress) -> int:
    """The round the student is in: the open test's, else the rounds finished
    (``progress.round`` counts finished rounds only)."""
    return progress.open_test.round if progress.open_test else progress.round


def format_progress(progress: LearningProgress) -> str:
    """Mastery per KC as a table."""
    state = progress.phase.value + (" (paused)" if progress.paused else "")
    lines = [f"{progress.student} on {progress.curriculum}: round {current_round(progress)}/"
             f"{progress.max_rounds}, {state}, mastery threshold {progress.mastery_threshold}",
             f"{'KC':<28} {'P(L)':>6}  {'status':<10} {'rounds':>6} {'items':>5} "
             f"{'time':>8}  prerequisites"]
    for kc in progress.kcs:
        status = ("skipped" if kc.skipped else "mastered"
                  if kc.mastery >= progress.mastery_threshold else "learning")
        lines.append(f"{kc.id:<28} {kc.mastery:>6.3f}  {status:<10} {kc.rounds:>6} "
                     f"{kc.items:>5} {kc.seconds:>7.0f}s  {', '.join(kc.prerequisites) or '-'}")
    return "\n".join(lines)


async def cmd_progress(ctx: Context) -> int:
    """``learn progress ID``: a table of mastery per KC."""
    progress: LearningProgress = await _query(ctx, LearningLoopWorkflow.state)
    ctx.emit(progress, lambda: format_progress(progress))
    return 0


async def cmd_remediation(ctx: Context) -> int:
    """``learn remediation ID``: the newest remediation artifact's text."""
    ref: RemediationRef | None = await _query(ctx, LearningLoopWorkflow.remediation)
    if ref is None:
        raise CliError(f"{ctx.args.workflow_id} has no remediation yet")
    try:
        text = Path(ref.artifact.path).read_text(encoding="utf-8")
    except OSError as err:
        raise CliError(f"cannot read {ref.artifact.path}: {err.strerror}; the artifact store "
                       "(ORCHESTRATOR_HOME) must be the worker's") from None
    ctx.emit({"remediation": ref, "text": text}, text)
    return 0


async def send_override(handle: WorkflowHandle[Any, Any], kind: str, update: Callable[..., Any],
                        override: TeacherOverride, actor: str | None,
                        key: str | None) -> OverrideAck:
    """Send a teacher override through its validated update, signed with the teacher's
    key (``key``: a key file, else ssh-agent's and ~/.ssh's) when the run's worker has
    GATE_SIGNERS; ``kind`` is the update's name, ``actor`` the ``--as`` given.

    Raises:
        CliError: no key of the teacher may override, signing failed, or ``--as`` names
            a principal this run cannot verify.
        WorkflowUpdateFailedError: the workflow refused the override (printed by ``run``).
    """
    signers = await query(handle, GatedWorkflow.gate_signers)
    if signers is not None and signers.configured:
        progress: LearningProgress = await query(handle, LearningLoopWorkflow.state)
        # the run the loop binds overrides to (kept across its continue-as-new), or
        # the current run from a worker that does not report one
        run_id = progress.override_run_id or (await handle.describe()).run_id
        principal, signature = signed_override(
            workflow_id=handle.id, run_id=run_id, number=progress.override_number + 1,
            kind=kind, reason=override.reason, content=override.signed_content(),
            keys=reviewer_keys(key), signers=signers, teachers=progress.teachers,
            actor=actor)
        override = override.model_copy(update={"actor": principal, "signature": signature})
    else:
        if actor and actor.startswith((KEY_PREFIX, GITHUB_PREFIX)):
            raise CliError(f"--as {actor}: {actor.split(':')[0]}: principals are proved by a "
                           "signature; this run takes unsigned overrides, so override under "
                           "a plain name")
        override = override.model_copy(update={"actor": actor or default_actor()})
    return await handle.execute_update(update, override)


async def _override(ctx: Context, kind: str, update: Callable[..., Any],
                    override: TeacherOverride) -> int:
    handle = await ctx.handle(ctx.args.workflow_id)
    ack = await send_override(handle, kind, update, override, ctx.args.actor, ctx.args.key)
    ctx.emit(ack, f"{handle.id}: {ack.detail}")
    return 0


async def cmd_set_mastery(ctx: Context) -> int:
    """``learn set-mastery ID --kc K --mastery P``."""
    a = ctx.args
    return await _override(ctx, "set_mastery", LearningLoopWorkflow.set_mastery, SetMastery(
        kc=a.kc, mastery=a.mastery, reason=a.reason or ""))


async def cmd_skip(ctx: Context) -> int:
    """``learn skip ID --kc K``."""
    a = ctx.args
    return await _override(ctx, "skip_kc", LearningLoopWorkflow.skip_kc,
                           SkipKc(kc=a.kc, reason=a.reason or ""))


async def cmd_pause(ctx: Context) -> int:
    """``learn pause ID``."""
    return await _override(ctx, "pause", LearningLoopWorkflow.pause,
                           PauseResume(reason=ctx.args.reason or ""))


async def cmd_resume(ctx: Context) -> int:
    """``learn resume ID``."""
    return await _override(ctx, "resume", LearningLoopWorkflow.resume,
                           PauseResume(reason=ctx.args.reason or ""))


STUDY_FEEDBACK_KINDS = ("diagnosed", "mastery", "test_expired", "paused", "resumed")
"""Audit entries ``learn study`` shows the student after each test."""


async def find_loop(ctx: Context, student: str, curriculum: str | None) -> str:
    """The workflow ID of ``student``'s loop: on ``curriculum``, else the one
    running loop of the student (the ``Student`` search attribute).

    Raises:
        CliError: none or several are running and no curriculum was named.
    """
    if curriculum:
        return checked_workflow_id(learning_workflow_id(student, curriculum))
    client = await ctx.client()
    query = (f"WorkflowType = '{workflow_type(LearningLoopWorkflow)}' AND "
             "ExecutionStatus = 'Running' AND "
             f"{STUDENT.name} = {visibility_literal(student, 'STUDENT')}")
    ids = [wf.id async for wf in client.list_workflows(query, limit=10)]
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise CliError(f"no running learning loop for {student!r}; start one with "
                       "`python starter.py learn start --student ... --curriculum ...` "
                       "(or name it with --curriculum)")
    raise CliError(f"{student!r} has several loops ({', '.join(ids)}); pick one with "
                   "--curriculum")


def study_answer(item: PublicItem, typed: str) -> str:
    """What the student typed, with a choice letter (``B``) of a multiple-choice
    item turned into that choice's text."""
    if item.choices and len(typed) == 1 and typed.isalpha():
        index = ord(typed.upper()) - ord("A")
        if 0 <= index < len(item.choices):
            return item.choices[index]
    return typed


async def cmd_study(ctx: Context) -> int:
    """``learn study STUDENT``: the loop at the terminal. Each open item with its
    choices, the answer typed in, the feedback of each test (score, mastery), the
    remediation as written (markdown kept), round after round until the loop ends
    or the student types ``q``; running it again resumes where it stopped (items
    already answered are not asked again).

    Returns:
        0 on MASTERED or when the student quits; EXIT_UNSUCCESSFUL when the loop
        ended otherwise (round limit, failed).
    """
    student = ctx.args.student
    wf_id = await find_loop(ctx, student, ctx.args.curriculum)
    await ctx.handle(wf_id)
    handle = (await ctx.client()).get_workflow_handle(wf_id)  # follows continue-as-new
    shown: set[tuple[str, str, str]] = set()
    remediation_shown: int | None = None
    waiting_said = ""
    print(f"studying {wf_id} as {student}; type q to stop (run this again to resume)",
          flush=True)
    while True:
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            ok, account = await run_outcome(handle)
            print(account, flush=True)
            return 0 if ok else EXIT_UNSUCCESSFUL
        progress: LearningProgress = await handle.query(
            LearningLoopWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
        for entry in await handle.query(LearningLoopWorkflow.audit_log,
                                        rpc_timeout=QUERY_TIMEOUT):
            key = (entry.at.isoformat(), entry.kind, entry.detail)
            if key not in shown:
                shown.add(key)
                if entry.kind in STUDY_FEEDBACK_KINDS and remediation_shown is not None:
                    print(f"  {entry.kind}: {entry.detail}", flush=True)
        if remediation_shown is None:  # the first pass: history is not news
            remediation_shown = (progress.last_remediation.round
                                 if progress.last_remediation else 0)
        rem = progress.last_remediation
        if rem is not None and rem.round != remediation_shown:
            remediation_shown = rem.round
            try:
                text = Path(rem.artifact.path).read_text(encoding="utf-8")
            except OSError:
                text = f"(the remediation is at {rem.artifact.path})"
            print(f"\n--- remediation of round {rem.round} ({rem.kc}) ---\n{text.rstrip()}\n"
                  "--- end of remediation ---\n", flush=True)
        test = progress.open_test
        if test is None or progress.paused:
            said = "paused: waiting for a teacher to resume" if progress.paused else \
                f"waiting for the next test ({progress.phase.value})"
            if said != waiting_said:
                print(said, flush=True)
                waiting_said = said
            await asyncio.sleep(POLL_INTERVAL)
            continue
        waiting_said = ""
        todo = [i for i in test.items if i.id not in test.answers]
        print(f"\nround {test.round}: {test.kc} ({len(todo)} of {len(test.items)} item(s) "
              "to answer)", flush=True)
        for item in todo:
            print(f"[{item.id}] {item.prompt}", flush=True)
            for n, choice in enumerate(item.choices):
                print(f"   {chr(ord('A') + n)}) {choice}", flush=True)
            try:
                typed = await ask_line("your answer: ")
            except EOFError:
                typed = "q"
            if typed.lower() in ("q", "quit"):
                print(f"stopped; resume with `python starter.py learn study {student}`",
                      flush=True)
                return 0
            ack = await handle.execute_update(LearningLoopWorkflow.submit_answers, SubmitAnswers(
                test_id=test.test_id, answers=[Answer(item=item.id,
                                                      answer=study_answer(item, typed))],
                student=student))
            if ack.closed:
                print("test handed in; diagnosing...", flush=True)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``learn ...``."""
    js = json_flag()
    learn = sub.add_parser("learn", help="the A* learning loop").add_subparsers(
        dest="learn_command", required=True, metavar="COMMAND")
    p = learn.add_parser("init-db", help="create or upgrade the learning database",
                         parents=[js])
    p.set_defaults(command=cmd_init_db)
    p = learn.add_parser("import", help="import a curriculum (YAML or JSON)", parents=[js])
    p.add_argument("file")
    p.set_defaults(command=cmd_import)
    p = learn.add_parser("start", help="start a student's loop", parents=[js])
    p.add_argument("--student", required=True)
    p.add_argument("--curriculum", required=True, help="an imported curriculum's id")
    p.add_argument("--max-rounds", type=int, help="default LEARNING_MAX_ROUNDS")
    p.add_argument("--threshold", type=float, help="default LEARNING_MASTERY_THRESHOLD")
    p.add_argument("--items-per-test", type=int, help="default LEARNING_ITEMS_PER_TEST")
    p.add_argument("--on-expiry", choices=["continue", "pause"],
                   help="default LEARNING_ON_EXPIRY")
    p.add_argument("--teacher", action="append", help="who may override (repeatable)")
    p.add_argument("--follow", action="store_true", help="print each step until the loop ends")
    p.set_defaults(command=cmd_start)
    for name, fn, hlp in (("test", cmd_test, "the open test"),
                          ("progress", cmd_progress, "mastery per KC"),
                          ("remediation", cmd_remediation, "the newest remediation")):
        p = learn.add_parser(name, help=hlp, parents=[js])
        p.add_argument("workflow_id")
        p.set_defaults(command=fn)
    p = learn.add_parser("study", help="study at the terminal: items, answers, feedback, "
                         "remediation, round after round (q stops; run again to resume)")
    p.add_argument("student")
    p.add_argument("--curriculum", help="which loop of the student (default: the one running)")
    p.set_defaults(command=cmd_study)
    p = learn.add_parser("answer", help="answer items of the open test", parents=[js])
    p.add_argument("workflow_id")
    p.add_argument("--item")
    p.add_argument("--answer")
    p.add_argument("--file", help="YAML/JSON: item: answer")
    p.add_argument("--finish", action="store_true",
                   help="close the test; unanswered items count as not attempted")
    p.add_argument("--as", dest="student",
                   help="who answers: the run's student (the default) or a teacher")
    p.set_defaults(command=cmd_answer)
    for name, fn, hlp in (("set-mastery", cmd_set_mastery, "teacher: set a KC's P(L)"),
                          ("skip", cmd_skip, "teacher: skip a KC"),
                          ("pause", cmd_pause, "teacher: pause the loop"),
                          ("resume", cmd_resume, "teacher: resume the loop")):
        p = learn.add_parser(name, help=hlp, parents=[js])
        p.add_argument("workflow_id")
        if name in ("set-mastery", "skip"):
            p.add_argument("--kc", required=True)
        if name == "set-mastery":
            p.add_argument("--mastery", type=float, required=True, help="P(L) in [0, 1]")
        p.add_argument("--reason")
        p.add_argument("--as", dest="actor", help="teacher name (default: your login) when "
                       "the run takes unsigned overrides; key:<principal> to pick one of "
                       "your key's principals when the worker has GATE_SIGNERS")
        p.add_argument("--key", help="SSH key to sign with when the worker has GATE_SIGNERS "
                       "(private key file, or the .pub of an ssh-agent key); default: the "
                       "first of ssh-agent's and ~/.ssh's keys that may override")
        p.set_defaults(command=fn)
