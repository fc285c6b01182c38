"""The README documents every setting and keeps exactly two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from settings import Settings

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
