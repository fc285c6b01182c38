"""Issue 7 wiring: dev-server tuning flags, worker options and start options from
settings, the CLI's exit without finalization, run_all's benchmark registry."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from bench.run_all import engine_targets, run_project_benchmark
from cli.common import workflow_start_options
from settings import PerformanceSettings, Settings, SettingsError, load_performance_settings
from temporal_plumbing.environments import (
    TUNED_DYNAMIC_CONFIG,
    TUNED_SQLITE_PRAGMAS,
    dev_server_argv,
    tuning_flags,
)
from temporal_plumbing.workers import worker_options

ROOT = Path(__file__).resolve().parents[2]


def flag_values(flags: list[str], name: str) -> dict[str, str]:
    values = [flags[i + 1] for i, f in enumerate(flags) if f == name]
    return dict(v.split("=", 1) for v in values)


def test_tuned_flags_carry_every_tuned_value_and_the_pragmas():
    flags = tuning_flags(tuned=True, perf=load_performance_settings())
    dynamic = flag_values(flags, "--dynamic-config-value")
    assert {k: json.loads(v) for k, v in dynamic.items()} == TUNED_DYNAMIC_CONFIG
    assert flag_values(flags, "--sqlite-pragma") == TUNED_SQLITE_PRAGMAS


def test_dynamic_config_from_the_environment_overrides_and_stock_has_no_tuning(monkeypatch):
    monkeypatch.setenv("DEV_SERVER_DYNAMIC_CONFIG",
                       '{"history.transferProcessorMaxPollRPS": 500, "frontend.rps": 9000}')
    tuned = flag_values(tuning_flags(tuned=True), "--dynamic-config-value")
    assert tuned["history.transferProcessorMaxPollRPS"] == "500"
    assert tuned["frontend.rps"] == "9000"
    monkeypatch.setenv("DEV_SERVER_TUNED", "false")
    stock = tuning_flags()
    assert flag_values(stock, "--dynamic-config-value") == {
        "history.transferProcessorMaxPollRPS": "500", "frontend.rps": "9000"}
    assert "--sqlite-pragma" not in stock


def test_dev_server_command_line_is_tuned_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("DEV_SERVER_TUNED", raising=False)
    argv = dev_server_argv(Settings(orchestrator_home=tmp_path), 7999, 8999)
    assert "history.transferProcessorMaxPollRPS=1000" in argv
    assert "journal_mode=wal" in argv


def test_worker_and_start_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ACTIVITY_THREADS", "6")
    monkeypatch.setenv("MAX_CONCURRENT_ACTIVITIES", "5")
    monkeypatch.setenv("STICKY_SCHEDULE_TO_START_TIMEOUT", "0.25")
    monkeypatch.setenv("WORKFLOW_TASK_TIMEOUT", "3")
    options = worker_options()
    assert options["activity_executor"]._max_workers == 6
    assert options["max_concurrent_activities"] == 5
    assert options["sticky_queue_schedule_to_start_timeout"] == timedelta(milliseconds=250)
    assert workflow_start_options() == {"task_timeout": timedelta(seconds=3)}


def test_more_concurrent_activities_than_threads_is_refused(monkeypatch):
    monkeypatch.setenv("ACTIVITY_THREADS", "2")
    monkeypatch.setenv("MAX_CONCURRENT_ACTIVITIES", "4")
    with pytest.raises(SettingsError, match="MAX_CONCURRENT_ACTIVITIES must not exceed"):
        load_performance_settings()


def test_exit_process_flushes_output_and_keeps_the_exit_code():
    code = ("from temporal_plumbing.runtime import exit_process; print('done', end=''); "
            "exit_process(3)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (3, "done")


async def test_run_all_skips_a_benchmark_module_not_present_yet():
    assert await run_project_benchmark("bench.not_written_yet") == {
        "skipped": "bench.not_written_yet is not present yet"}


def test_recovery_target_needs_zero_reruns():
    tuned = {"step_ms_activity": 9.0, "gate_ms": 20.0, "workflows_per_s": 60.0,
             "recovery": {"restart_to_next_step_s_max": 1.5, "finished_steps_rerun": [0, 1]}}
    met = {t["name"]: t["met"] for t in engine_targets(tuned)}
    assert met == {"step_ms_activity": True, "gate_ms": False, "workflows_per_s": True,
                   "recovery_restart_to_next_step_s": False}


def test_every_performance_setting_is_in_the_readme():
    """Each setting has its row in the one configuration table."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration", 1)[1]
    section = section.split("\n## ", 1)[0]
    missing = [name.upper() for name in PerformanceSettings.model_fields
               if f"`{name.upper()}`" not in section]
    assert not missing, f"README ## Configuration lacks {missing}"


def test_one_temporal_runtime_per_process_is_also_the_default():
    from temporalio.runtime import Runtime

    from temporal_plumbing.runtime import process_runtime

    assert process_runtime() is process_runtime() is Runtime.default()
