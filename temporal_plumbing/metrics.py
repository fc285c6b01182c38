"""The orchestrations' own metrics, emitted through the SDK's metric meters.

Workflows record through ``workflow.metric_meter()`` (the SDK drops what a
workflow records while it replays, so a replay after a worker restart or a
cache eviction never counts twice) and activities through
``activity.metric_meter()``.

Replay-safe is not enough on its own: a query that reaches a worker which does not
hold the run in its cache (``max_cached_workflows=0``, or after an eviction or a
restart) while a workflow task is pending is answered by replaying the history *and
the events that task has yet to process*, and the SDK runs the code after those
events as live, not replaying; the workflow task then runs the same code live again.
So every function below records a workflow's emission only the first time this
process sees it: an emission is identified by the run, the metric with its labels,
and how many of those the run emitted before it (deterministic code emits the same
sequence on every replay), and :func:`_first_time` keeps the last
``_RECORDED_MAX`` identities. A second worker process answering that query would
still count again; one worker per task queue (this project's deployment) does not.

Both meters already carry ``namespace``, ``task_queue`` and ``workflow_type``
(activities also ``activity_type``); the functions below add the labels named in each
docstring. With METRICS_BIND set the worker's runtime (``temporal_plumbing.runtime``)
serves them beside the SDK's own metrics (``temporal_*``) at
``http://METRICS_BIND/metrics``; without it the meters are no-ops.

Every name starts with ``orchestrator_``. Counters are integers; a histogram
exported to Prometheus has ``_bucket``, ``_sum`` and ``_count`` series, so
``orchestrator_llm_cost_usd_sum`` is the money spent. Workflows import this module
passed through the sandbox (its record of emissions is one per process).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from weakref import WeakKeyDictionary

from temporalio import workflow
from temporalio.common import MetricMeter

GATES_OPENED = "orchestrator_gates_opened"
GATES_CLOSED = "orchestrator_gates_closed"
GATE_WAIT = "orchestrator_gate_wait_seconds"
GATE_DECISIONS = "orchestrator_gate_decisions"
GATE_REFUSED = "orchestrator_gate_refused"
LLM_TOKENS = "orchestrator_llm_tokens"
LLM_COST = "orchestrator_llm_cost_usd"
STEP_DURATION = "orchestrator_step_duration_seconds"
BREAKER_TRANSITIONS = "orchestrator_breaker_transitions"
LEARNING_ANSWERS = "orchestrator_learning_answers"
MASTERY_EVENTS = "orchestrator_mastery_events"
TRANSITIONS = "orchestrator_transitions"
LLM_FAILURES = "orchestrator_llm_failures"

_RECORDED_MAX = 100_000  # emission identities kept (a few MB); older ones are forgotten
_recorded: OrderedDict[tuple[object, ...], None] = OrderedDict()
_emitted: WeakKeyDictionary[MetricMeter, Counter[tuple[object, ...]]] = WeakKeyDictionary()
_lock = threading.Lock()  # workflow tasks run on several threads


def _first_time(name: str, labels: Mapping[str, str]) -> bool:
    """Whether to record this emission of ``name`` with ``labels`` now: always outside a
    workflow (activities) and in read-only workflow code (update validators, never
    replayed); in workflow code, not while replaying and not when this process
    already recorded the same emission of the same run (see the module docstring)."""
    if not workflow.in_workflow() or workflow.unsafe.is_read_only():
        return True
    kind = (name, *sorted(labels.items()))
    with _lock:
        # one count per workflow instance (its meter), advanced on replay too
        counts = _emitted.setdefault(workflow.metric_meter(), Counter())
        counts[kind] += 1
        if workflow.unsafe.is_replaying():
            return False
        key = (workflow.info().run_id, counts[kind], *kind)
        if key in _recorded:
            return False
        _recorded[key] = None
        if len(_recorded) > _RECORDED_MAX:
            _recorded.popitem(last=False)
    return True

# Histogram buckets (upper bounds) for PrometheusConfig.histogram_bucket_overrides.
# A human gate waits seconds (a test) to a week; a step runs a second to hours;
# an LLM call costs a fraction of a cent to a dollar.
HISTOGRAM_BUCKETS: Mapping[str, Sequence[float]] = {
    GATE_WAIT: [1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400],
    STEP_DURATION: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
    LLM_COST: [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
}


def source_kind(source: str) -> str:
    """A decision's source as a label: its words without numbers, so
    ``github comment 1234`` is ``github comment`` (one series, not one per comment)."""
    return " ".join(w for w in source.split() if not w.isdigit()) or "unknown"


def gate_opened(meter: MetricMeter, gate: str) -> None:
    """+1 ``orchestrator_gates_opened{gate}``. Open gates now =
    opened - closed (see :func:`gate_closed`)."""
    labels = {"gate": gate}
    if _first_time(GATES_OPENED, labels):
        meter.create_counter(GATES_OPENED, "human gates opened").with_additional_attributes(
            labels).add(1)


def gate_closed(meter: MetricMeter, gate: str, outcome: str) -> None:
    """+1 ``orchestrator_gates_closed{gate, outcome}``; ``outcome`` is ``decided``,
    ``expired`` or ``canceled`` (the run was cancelled, or failed, while it waited). A
    gate carried over continue-as-new is neither closed by the run that continues nor
    opened again by the next, so opened - closed stays the gates open now."""
    labels = {"gate": gate, "outcome": outcome}
    if _first_time(GATES_CLOSED, labels):
        meter.create_counter(GATES_CLOSED, "human gates closed").with_additional_attributes(
            labels).add(1)


def gate_decided(meter: MetricMeter, gate: str, verdict: str, source: str,
                 waited_seconds: float) -> None:
    """An accepted decision: +1 ``orchestrator_gate_decisions{gate, verdict, source}``
    (``source`` through :func:`source_kind`) and ``waited_seconds`` (workflow time
    from the gate opening to the decision) into the
    ``orchestrator_gate_wait_seconds{gate, verdict}`` histogram."""
    labels = {"gate": gate, "verdict": verdict, "source": source_kind(source)}
    if not _first_time(GATE_DECISIONS, labels):
        return
    meter.create_counter(GATE_DECISIONS, "accepted gate decisions").with_additional_attributes(
        labels).add(1)
    meter.create_histogram_float(
        GATE_WAIT, "seconds from a gate opening to its accepted decision", "s",
    ).with_additional_attributes({"gate": gate, "verdict": verdict}).record(
        max(waited_seconds, 0.0))


def gate_refused(meter: MetricMeter, source: str) -> None:
    """+1 ``orchestrator_gate_refused{source}``: a decision (or a signal of an unknown
    name) that the workflow refused and audited; ``source`` is ``signal``,
    ``update``, ``comment`` or ``unknown_signal``."""
    labels = {"source": source_kind(source)}
    if _first_time(GATE_REFUSED, labels):
        meter.create_counter(GATE_REFUSED, "refused gate decisions").with_additional_attributes(
            labels).add(1)


def llm_call(meter: MetricMeter, phase: str, model: str, tokens: Mapping[str, int],
             cost_usd: float) -> None:
    """One LLM call: ``orchestrator_llm_tokens{phase, model, kind}`` += each count
    of ``tokens`` (kind: ``input``, ``output``, ``cache_read``, ``cache_creation``)
    and ``cost_usd`` (estimated from LLM_PRICES) into the
    ``orchestrator_llm_cost_usd{phase, model}`` histogram (its ``_sum`` is the spend)."""
    labels = {"phase": phase or "none", "model": model or "unknown"}
    if not _first_time(LLM_COST, labels):
        return
    counter = meter.create_counter(LLM_TOKENS, "LLM tokens", "tokens")
    for kind, count in tokens.items():
        if count:
            counter.with_additional_attributes({**labels, "kind": kind}).add(int(count))
    meter.create_histogram_float(LLM_COST, "estimated cost of one LLM call", "USD") \
        .with_additional_attributes(labels).record(max(cost_usd, 0.0))


def step_finished(meter: MetricMeter, tool: str, outcome: str, seconds: float) -> None:
    """A workstream step's execution on ``tool`` ended with ``outcome``
    (``succeeded``, ``failed``, or ``canceled`` when the run was cancelled while it
    ran): ``seconds`` (workflow time, retries included) into
    ``orchestrator_step_duration_seconds{tool, outcome}``; its ``_count`` counts the
    executions by outcome."""
    labels = {"tool": tool, "outcome": outcome}
    if _first_time(STEP_DURATION, labels):
        meter.create_histogram_float(STEP_DURATION, "workstream step execution time", "s") \
            .with_additional_attributes(labels).record(max(seconds, 0.0))


def breaker_transition(meter: MetricMeter, tool: str, to_phase: str) -> None:
    """+1 ``orchestrator_breaker_transitions{tool, to}``: ``tool``'s circuit breaker
    changed to ``to_phase`` (``open``, ``half_open``, ``closed``)."""
    labels = {"tool": tool, "to": to_phase}
    if _first_time(BREAKER_TRANSITIONS, labels):
        meter.create_counter(BREAKER_TRANSITIONS, "circuit breaker state changes") \
            .with_additional_attributes(labels).add(1)


def learning_answers(meter: MetricMeter, curriculum: str, correct: int, total: int) -> None:
    """A scored test: ``orchestrator_learning_answers{curriculum, result}`` +=
    ``correct`` (result ``correct``) and ``total - correct`` (``incorrect``)."""
    if not _first_time(LEARNING_ANSWERS, {"curriculum": curriculum}):
        return
    counter = meter.create_counter(LEARNING_ANSWERS, "scored learner answers")
    for result, count in (("correct", correct), ("incorrect", total - correct)):
        if count > 0:
            counter.with_additional_attributes(
                {"curriculum": curriculum, "result": result}).add(count)


def mastery_event(meter: MetricMeter, curriculum: str, event: str) -> None:
    """+1 ``orchestrator_mastery_events{curriculum, event}``; ``event`` is
    ``mastered`` (P(L) crossed the threshold), ``lost`` (fell below it) or
    ``updated`` (any other BKT update)."""
    labels = {"curriculum": curriculum, "event": event}
    if _first_time(MASTERY_EVENTS, labels):
        meter.create_counter(MASTERY_EVENTS, "BKT mastery updates").with_additional_attributes(
            labels).add(1)


def transition(meter: MetricMeter, from_phase: str, to_phase: str) -> None:
    """+1 ``orchestrator_transitions{from, to}``: a run changed phase (the meter's
    ``workflow_type`` says whose), so ``to`` the failed phase (``FAILED``, a workstream's
    ``failed``) counts the runs that failed."""
    labels = {"from": from_phase, "to": to_phase}
    if _first_time(TRANSITIONS, labels):
        meter.create_counter(TRANSITIONS, "workflow phase transitions") \
            .with_additional_attributes(labels).add(1)


def llm_failed(meter: MetricMeter, phase: str, model: str, error: str) -> None:
    """+1 ``orchestrator_llm_failures{phase, model, error}``: one LLM call (one attempt
    of ``llm_complete``; Temporal retries the retryable ones) failed; ``error`` is the
    ``ApplicationError`` type (``RateLimited``, ``LlmOutputInvalid``, ...) or the
    exception's class name."""
    labels = {"phase": phase or "none", "model": model or "unknown", "error": error}
    if _first_time(LLM_FAILURES, labels):
        meter.create_counter(LLM_FAILURES, "failed LLM calls").with_additional_attributes(
            labels).add(1)
