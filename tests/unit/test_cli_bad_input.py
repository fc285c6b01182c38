"""Every bad input to the CLI is one line on stderr and a non-zero exit, never a
traceback: the CLI runs as a subprocess, as a user runs it. No case needs a
Temporal server (TEMPORAL_ADDRESS points at a closed port, so a case that reached
for one would fail with a connection error, which the assertions catch)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from models.text import TITLE_MAX_CHARS, NotUtf8Error, decode_utf8, slugify

ROOT = Path(__file__).resolve().parents[2]
NOT_UTF8 = b"title: caf\xe9 ok\n"  # Latin-1 e-acute at offset 10
BAD_OFFSET = "offset 10"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("badinput")
    repo = root / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (root / "latin1.txt").write_bytes(NOT_UTF8)
    (root / "latin1.yaml").write_bytes(NOT_UTF8)
    (root / "ok.md").write_text("# A problem\n\nSome text.\n")
    (root / "bad-curriculum.yaml").write_text(
        "id: frac\ntitle: Fractions\nknowledge_components:\n"
        "  - id: a\n    name: A\n    prerequisites: [nowhere]\n"
        "  - id: b\n    prerequisites: [a]\n"  # b lacks its name: a shape problem
        "  - id: a\n    name: A again\n")
    (root / "bad-spec.yaml").write_text(
        "work_item: w1\nsteps:\n"
        "  - {id: a, kind: shell, depends_on: [ghost]}\n"
        "  - {id: a, kind: shell}\n")
    return root


def env(workdir: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "GITHUB_"))}
    e.update(TEMPORAL_ADDRESS=f"127.0.0.1:{closed_port()}",
             ORCHESTRATOR_HOME=str(workdir / "home"), PYTHONPATH=str(ROOT), **extra)
    return e


# (case, argv, extra environment, text the one line must contain)
CASES: list[tuple[str, list[str], dict[str, str], str]] = [
    ("blank title", ["sdlc", "start", "--title", "   ", "--repo", "{repo}"], {}, "blank"),
    ("long title", ["sdlc", "start", "--title", "x" * 10_000, "--repo", "{repo}"], {},
     f"limit is {TITLE_MAX_CHARS}"),
    ("description not UTF-8", ["sdlc", "start", "--title", "t", "--repo", "{repo}",
                               "--description-file", "{w}/latin1.txt"], {}, BAD_OFFSET),
    ("description missing", ["sdlc", "start", "--title", "t", "--repo", "{repo}",
                             "--description-file", "{w}/nope.txt"], {}, "nope.txt"),
    ("content not UTF-8", ["approve", "sdlc-x-y", "--content-file", "{w}/latin1.txt"], {},
     BAD_OFFSET),
    ("problem not UTF-8", ["analysis", "start", "--problem", "{w}/latin1.txt"], {},
     BAD_OFFSET),
    ("analysis blank title", ["analysis", "start", "--problem", "{w}/ok.md", "--title", " "],
     {}, "blank"),
    ("curriculum not UTF-8", ["learn", "import", "{w}/latin1.yaml"], {}, BAD_OFFSET),
    ("curriculum lists every problem", ["learn", "import", "{w}/bad-curriculum.yaml"], {},
     "nowhere"),
    ("answers not UTF-8", ["learn", "answer", "learn-x-y", "--file", "{w}/latin1.yaml"], {},
     BAD_OFFSET),
    ("spec not UTF-8", ["workstream", "start", "{w}/latin1.yaml"], {}, BAD_OFFSET),
    ("spec lists every problem", ["workstream", "start", "{w}/bad-spec.yaml"], {},
     "depends on unknown step 'ghost'"),
    ("student name too long", ["learn", "start", "--student", "s" * 1200,
                               "--curriculum", "c"], {}, "limit is 1000"),
    ("list --limit -1", ["list", "--limit", "-1"], {}, "give 1 or more"),
    ("list --limit text", ["list", "--limit", "many"], {}, "not a whole number"),
    ("unknown command", ["frobnicate"], {}, "invalid choice"),
    ("missing argument", ["learn", "start"], {}, "required"),
    ("dev-server remote address", ["dev-server", "--background"],
     {"TEMPORAL_ADDRESS": "temporal.example.com:7233"}, "not this machine"),
    ("dev-server UI URL without port", ["dev-server", "--background", "--port", "1"],
     {"TEMPORAL_UI_URL": "http://localhost"}, "names no port"),
]


def run_case(workdir: Path, argv: list[str], extra: dict[str, str]
             ) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("{w}", str(workdir)).replace("{repo}", str(workdir / "repo"))
            for a in argv]
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), *argv],
                          env={**env(workdir), **extra}, capture_output=True, text=True,
                          cwd=workdir, timeout=120)


@pytest.fixture(scope="module")
def results(workdir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case run once, two at a time (each is a fresh interpreter)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_case, workdir, argv, extra)
                   for name, argv, extra, _ in CASES}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize(("name", "expected"), [(c[0], c[3]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(results: dict[str, subprocess.CompletedProcess[str]],
                               name: str, expected: str) -> None:
    proc = results[name]
    lines = proc.stderr.splitlines()
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]


def test_curriculum_lists_shape_and_file_problems_at_once(
        results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    line = results["curriculum lists every problem"].stderr
    # a shape problem (b has no name) and the problems across the file, in one run
    assert "name" in line and "nowhere" in line and "duplicate KC id 'a'" in line, line


def test_spec_lists_every_problem_at_once(
        results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    line = results["spec lists every problem"].stderr
    assert "duplicate step id 'a'" in line and "unknown step 'ghost'" in line, line


def test_output_to_a_closed_pipe_ends_quietly(workdir: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head`) is gone before we write
    try:
        proc = subprocess.run([sys.executable, str(ROOT / "starter.py"), "dev-server", "--stop"],
                              env=env(workdir), stdout=write_end, stderr=subprocess.PIPE,
                              text=True, cwd=workdir, timeout=120)
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141


@pytest.mark.parametrize(("title", "slug"), [
    ("Add CSV export!", "add-csv-export"),
    ("Café déjà vu", "cafe-deja-vu"),
    ("日本語", "ribenyu"),
    ("Привет мир", "privet-mir"),
])
def test_titles_of_any_script_get_a_readable_slug(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_a_title_with_no_letters_gets_a_stable_hash_slug() -> None:
    assert slugify("!!!") == slugify("!!!")
    assert slugify("!!!").startswith("t-") and len(slugify("!!!")) == 10
    assert slugify("!!!") != slugify("???")
    assert len(slugify("x" * 10_000)) <= 60
    with pytest.raises(ValueError):
        slugify("   ")


def test_not_utf8_names_the_file_and_offset() -> None:
    with pytest.raises(NotUtf8Error, match=r"f\.txt is not UTF-8 text: byte 0xe9 at offset 10"):
        decode_utf8(NOT_UTF8, "f.txt")
    assert decode_utf8("\ufeffé".encode(), "f") == "é"
