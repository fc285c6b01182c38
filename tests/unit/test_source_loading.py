"""Loading analysis sources refuses what could leak private data: a symlink leaving
the given directory, a non-text file and a file over the size limit, each with one
line naming the file (the real activity on real files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.analysis import AnalysisActivities
from activities.artifacts import ArtifactStore
from models.analysis import LoadSourcesInput


@pytest.fixture
def load(tmp_path: Path):
    acts = AnalysisActivities(ArtifactStore(tmp_path / "store"))

    def run(*paths: Path, **kw) -> list:
        return acts.load_sources(LoadSourcesInput(paths=[str(p) for p in paths], **kw))
    return run


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "private" / "passwd.md"
    secret.parent.mkdir()
    secret.write_text("# root:x:0:0\nPRIVATE-CONTENT\n")
    return secret


def refused(run, *paths: Path, **kw) -> str:
    with pytest.raises(ApplicationError) as err:
        run(*paths, **kw)
    assert err.value.non_retryable and err.value.type == "InvalidSource"
    assert "\n" not in err.value.message
    return err.value.message


def test_symlinks_inside_the_directory_are_followed(tmp_path, load):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\nalpha\n")
    os.symlink(docs / "a.md", docs / "b.md")
    assert [d.title for d in load(docs)] == ["A", "A"]


def test_a_symlink_leaving_the_directory_is_refused(tmp_path, load, outside):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\nalpha\n")
    os.symlink(outside, docs / "notes.md")
    message = refused(load, docs)
    assert f"{docs / 'notes.md'} is a symlink to {outside}" in message
    assert "PRIVATE-CONTENT" not in message


def test_a_symlinked_directory_leaving_it_is_refused(tmp_path, load, outside):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\nalpha\n")
    os.symlink(outside.parent, docs / "more")
    assert f"{docs / 'more'} is a symlink to {outside.parent}" in refused(load, docs)


def test_a_file_given_as_a_symlink_out_of_its_directory_is_refused(tmp_path, load, outside):
    link = tmp_path / "docs" / "link.md"
    link.parent.mkdir()
    os.symlink(outside, link)
    assert f"{link} is a symlink to {outside}" in refused(load, link)


def test_non_text_and_oversized_files_are_refused(tmp_path, load):
    binary = tmp_path / "image.md"
    binary.write_bytes(b"# looks like markdown\x00\x01\x02")
    assert f"source {binary} is not a text file" in refused(load, binary)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    assert f"source {latin} is not a text file" in refused(load, latin)
    big = tmp_path / "big.md"
    big.write_text("# Big\n" + "x" * 2000)
    assert f"source {big} is 2,006 bytes, over the limit of 1,000" in refused(
        load, big, max_bytes=1000)
    assert load(big, max_bytes=5000)[0].title == "Big"


def test_titles_are_read_from_the_document(tmp_path, load):
    docs = tmp_path / "titles"
    docs.mkdir()
    (docs / "a.rst").write_text(
        ".. comment\n\n=========\nOverlined\n=========\n\nText.\n\nSection\n-------\n")
    (docs / "b.rst").write_text("Introduction to httpx\n~~~~~~~~~~~~~~~~~~~~~\n\nbody\n")
    (docs / "c.rst").write_text("no title here\n\n   ***\n")
    (docs / "d.md").write_text("---\ntitle: meta\n---\n```\n# not a title\n```\n"
                               "## Sub first\n\n# Real Title #\n")
    (docs / "e.md").write_text("#hashtag line\nSetext Title\n============\n")
    (docs / "f.md").write_text("### Only a subsection\ntext\n")
    (docs / "g.txt").write_text("plain text\n")
    titles = {Path(d.location).name: d.title for d in load(docs)}
    assert titles == {"a.rst": "Overlined", "b.rst": "Introduction to httpx",
                      "c.rst": "c.rst", "d.md": "Real Title", "e.md": "Setext Title",
                      "f.md": "Only a subsection", "g.txt": "g.txt"}


def test_texts_go_by_reference_when_a_run_asks(tmp_path, load):
    """With a workflow ID the text is written to the artifact store (0600) and only
    its reference comes back."""
    doc = tmp_path / "a.md"
    doc.write_text("# A\nPRIVATE-MARKER alpha\n")
    [loaded] = load(doc, workflow_id="analysis-x")
    assert loaded.text == "" and loaded.text_ref is not None
    stored = Path(loaded.text_ref.path)
    assert stored.is_relative_to(tmp_path / "store") and "PRIVATE-MARKER" in stored.read_text()
    assert stored.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE-MARKER" not in loaded.model_dump_json()


def test_a_text_changed_in_the_store_is_refused_by_the_support_check(tmp_path):
    """A source text by reference that changed after it was written is not used:
    the support check fails for good, naming the source."""
    from models.analysis import SupportCheckInput

    acts = AnalysisActivities(ArtifactStore(tmp_path / "store"))
    doc = tmp_path / "a.md"
    doc.write_text("# A\nalpha beta gamma\n")
    [loaded] = acts.load_sources(LoadSourcesInput(paths=[str(doc)], workflow_id="analysis-x"))
    assert loaded.text_ref is not None
    Path(loaded.text_ref.path).write_text("tampered")
    with pytest.raises(ApplicationError) as err:
        acts.check_citation_support(SupportCheckInput(
            workflow_id="analysis-x", sources=[loaded], body="## S\nalpha [L0-1].\n"))
    assert err.value.non_retryable and err.value.type == "DocumentUnavailable"
    assert err.value.message.startswith(f"the text of source {loaded.id} cannot be read: ")
    assert "sha256 mismatch" in err.value.message


def cli_refused(*paths: Path) -> str:
    from cli.analysis import existing_paths
    from cli.common import CliError

    with pytest.raises(CliError) as err:
        existing_paths([str(p) for p in paths])
    assert "\n" not in str(err.value)
    return str(err.value)


def test_cli_sources_are_confined_to_the_directory_given(tmp_path, outside):
    """``--source`` paths are passed as written (not resolved), so a symlink given
    directly is held to its own directory, as the worker holds it; the CLI refuses
    each bad source at once in one line naming the file."""
    from cli.analysis import existing_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\nalpha\n")
    os.symlink(docs / "a.md", docs / "same.md")
    os.symlink(outside, docs / "link.md")
    assert existing_paths([str(docs / "same.md")]) == [str(docs / "same.md")]
    assert f"{docs / 'link.md'} is a symlink to {outside}" in cli_refused(docs / "link.md")
    assert f"{docs / 'link.md'} is a symlink to {outside}" in cli_refused(docs)
    binary = tmp_path / "bin.md"
    binary.write_bytes(b"# x\x00\x01")
    assert f"source {binary} is not a text file" in cli_refused(binary)
    big = tmp_path / "big.txt"
    big.write_text("x" * 1_000_001)
    assert f"source {big} is 1,000,001 bytes, over the limit" in cli_refused(big)
