"""Every benchmark runs as a file (``python bench/<name>.py``), as the README says,
although bench/github.py shares its name with PyGithub's ``github`` package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_and_parses_its_arguments_as_a_file(script: Path):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT / "bench")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
