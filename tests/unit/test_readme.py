"""The README documents every setting and keeps exactly two set-up commands."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from settings import Settings
from starter import build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    table = README.split("## Configuration", 1)[1]
    missing = [name.upper() for name in Settings.model_fields
               if f"`{name.upper()}`" not in table]
    assert not missing, f"README configuration table lacks {missing}"


def test_setup_names_exactly_make_demo_and_make_test():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", setup, re.S).group(1)
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == [
        "make demo", "make test"]


# -- every command the README shows exists; every variable row is in Configuration

def _starter_commands() -> list[tuple[int, list[str]]]:
    """(line number, argv after ``starter.py``) of each ``python starter.py ...``
    the README shows, in code blocks and inline code."""
    found: list[tuple[int, list[str]]] = []
    for number, line in enumerate(README.splitlines(), 1):
        for match in re.finditer(r"(?:\.venv/bin/)?python starter\.py ([^`#\n]*)", line):
            text = match.group(1).replace("\\", " ").strip()
            text = re.split(r"\s(?:&|\||;)\s?|\s&$", text)[0]
            try:
                argv = shlex.split(text)
            except ValueError:
                argv = text.split()
            found.append((number, argv))
    return found


def _walk(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str], str]:
    """The subparser ``argv`` names, the flags it uses, and the command path."""
    parser = build_parser()
    path = "orchestrator"
    flags: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if token in ("...", "COMMAND"):  # prose: "python starter.py learn ..."
            break
        if subs and not token.startswith("-"):
            if token not in subs[0].choices:
                raise LookupError(f"`{path} {token}` is not a command")
            parser, path = subs[0].choices[token], f"{path} {token}"
        elif token.startswith("--"):
            flags.append(token.split("=", 1)[0])
        i += 1
    return parser, flags, path


def test_every_command_the_readme_shows_exists():
    commands = _starter_commands()
    assert len(commands) > 30
    problems = []
    for number, argv in commands:
        try:
            parser, flags, path = _walk(argv)
        except LookupError as err:
            problems.append(f"README line {number}: {err}")
            continue
        known = {s for a in parser._actions for s in a.option_strings}
        problems += [f"README line {number}: `{path}` has no {flag}"
                     for flag in flags if flag not in known and "[" not in flag]
    assert not problems, "\n".join(problems)


def test_every_variable_row_is_in_the_configuration_section():
    section = ""
    outside = []
    for number, line in enumerate(README.splitlines(), 1):
        if line.startswith("## "):
            section = line[3:].strip()
        if re.match(r"^\| `[A-Z][A-Z0-9_]+`", line) and section != "Configuration":
            outside.append(f"line {number} ({section}): {line[:60]}")
    assert not outside, "variable rows outside ## Configuration:\n" + "\n".join(outside)
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [n for n, line in enumerate(table.splitlines()) if line.startswith("| `")]
    assert rows == list(range(rows[0], rows[0] + len(rows))), "the table is split"
