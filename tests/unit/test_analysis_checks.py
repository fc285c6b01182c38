"""The enforced checks of the analysis pipeline, and web search through the real
``exa-py`` client against a local server that speaks Exa's API."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.analysis import AnalysisActivities
from activities.artifacts import ArtifactStore
from activities.web_search import WebSearchActivities, build_exa_client
from models.analysis import CitationMap, LoadSourcesInput, Outline, OutlinePoint, WebSearchInput
from tests.fakes import exa_api
from tests.workflows.analysis_harness import FIXTURES, catalogue
from workflows import analysis_checks as checks

OUTLINE = Outline(title="t", points=[
    OutlinePoint(id="P1", heading="Market", claim="grows"),
    OutlinePoint(id="P2", heading="View", claim="we should", factual=False)])


def test_language_detection_and_keyword_scores():
    cat = catalogue()
    assert checks.detect_language("Il mercato e la concorrenza per il nostro prodotto",
                                  cat.language_markers) == "it"
    assert checks.detect_language("The market and the competitors of our product",
                                  cat.language_markers) == "en"
    scores = checks.keyword_scores("new regulation and compliance law for the market", cat)
    assert checks.ranked(scores)[0] == "policy" and scores["policy"] == 1.0
    assert checks.needs_clarification({"a": 0.8, "b": 0.65, "c": 0.1})
    assert not checks.needs_clarification({"a": 0.9, "b": 0.65})


@pytest.mark.parametrize(("text", "problem"), [
    ("no frontmatter", "must start with a YAML frontmatter"),
    ("---\nanalyst: x\nconfidence: low\n---\nbody", "'sources' is missing"),
    ("---\nanalyst: x\nconfidence: low\nsources: []\n---\n", "body after the frontmatter"),
    ("---\nanalyst: x\nconfidence: low\nsources: [L0-9]\n---\nbody", "L0-9, which are not"),
    ("---\n: [\n---\nbody", "not valid YAML"),
])
def test_invalid_analyst_outputs_say_why(text, problem):
    output, problems = checks.validate_analyst_output("x", text, ["analyst", "confidence",
                                                                  "sources"], {"L0-1"})
    assert output is None and problem in "; ".join(problems)


def test_valid_analyst_output_keeps_sources_and_references():
    output, problems = checks.validate_analyst_output(
        "market", "---\nanalyst: market\nconfidence: high\nsources: [L0-1]\n"
        "references: ['Porter (1980)']\n---\n## Findings\ntext", ["analyst", "sources"],
        {"L0-1"})
    assert problems == [] and output.sources == ["L0-1"]
    assert output.references == ["Porter (1980)"]


def test_citation_map_checks():
    loaded = {"L0-1", "L1-1"}
    ok = CitationMap(citations={"P1": ["L0-1"], "P2": []})
    assert checks.validate_citation_map(ok, OUTLINE, loaded) == []
    empty = CitationMap(citations={"P1": [], "P2": []})
    assert "empty" in checks.validate_citation_map(empty, OUTLINE, loaded)[0]
    bad = CitationMap(citations={"P1": ["L2-7"], "P9": ["L0-1"]})
    problems = " ".join(checks.validate_citation_map(bad, OUTLINE, loaded))
    assert "'L2-7', which is not a loaded" in problems and "'P9'" in problems


def test_report_checks_and_marker_removal():
    fields = {"title": "string", "sources": "array"}
    text = checks.remove_source_markers(
        "---\ntitle: T\nsources: [L0-1]\n---\nGrowth is fast [L0-1; L1-1]. "
        "[Source: analyst-market]\n")
    assert "[Source:" not in text
    meta, body, problems = checks.validate_report(text, fields, {"L0-1", "L1-1"})
    assert problems == [] and checks.inline_citations(body) == ["L0-1", "L1-1"]
    _, _, problems = checks.validate_report("---\ntitle: 3\n---\nNo cites.", fields, set())
    assert "'title' must be of type string" in problems[0]
    assert any("'sources' is missing" in p for p in problems)
    assert any("no inline citations" in p for p in problems)


def test_edited_outline_parsing():
    outline = checks.parse_edited_outline(
        "# ignored\n- Market: grows 10% a year\n- View: enter now (opinion)\n", "T")
    assert [(p.id, p.heading, p.factual) for p in outline.points] == [
        ("P1", "Market", True), ("P2", "View", False)]
    with pytest.raises(ValueError):
        checks.parse_edited_outline("nothing here", "T")


def test_load_sources_reads_files_and_directories(tmp_path):
    acts = AnalysisActivities(ArtifactStore(tmp_path))
    docs = acts.load_sources(LoadSourcesInput(paths=[str(FIXTURES)], first_number=3,
                                              max_chars=50))
    assert [d.id for d in docs] == ["L0-3", "L0-4", "L0-5"]
    assert docs[0].title == "Competitor notes: invoicing software in Germany"
    assert all(len(d.text) <= 50 and len(d.sha256) == 64 for d in docs)
    with pytest.raises(ApplicationError, match="does not exist") as err:
        acts.load_sources(LoadSourcesInput(paths=[str(tmp_path / "nope.md")]))
    assert err.value.non_retryable


def test_web_search_through_exa_py():
    with exa_api.serve() as fake:
        search = WebSearchActivities(build_exa_client("exa-key", fake.url))
        results = search.web_search(WebSearchInput(query="German e-invoicing", num_results=2))
        assert [r.url for r in results] == ["https://example.org/german-e-invoicing/1",
                                            "https://example.org/german-e-invoicing/2"]
        assert fake.requests[0]["numResults"] == 2 and fake.headers[0]["x-api-key"] == "exa-key"
        fake.status = 401
        with pytest.raises(ApplicationError, match="EXA_API_KEY") as refused:
            search.web_search(WebSearchInput(query="x"))
        assert refused.value.non_retryable
        fake.status = 429
        with pytest.raises(ApplicationError) as limited:
            search.web_search(WebSearchInput(query="x"))
        assert not limited.value.non_retryable
    with pytest.raises(ApplicationError, match="set EXA_API_KEY"):
        WebSearchActivities(None).web_search(WebSearchInput(query="x"))


def test_citation_support_treats_frameworks_as_lenses_not_evidence():
    from activities.analysis import citation_support, mark_unsupported
    from models.analysis import SourceDoc
    from workflows.analysis_checks import uncited_sources

    registry = [
        SourceDoc(id="L0-1", level="L0", title="mandate", location="m.md",
                  text="From 2027 businesses above EUR 800,000 turnover must issue "
                       "structured e-invoices. Paper invoices are phased out."),
        SourceDoc(id="L0-2", level="L0", title="other", location="o.md",
                  text="Competitors price their tools from EUR 7 a month."),
        SourceDoc(id="L1-1", level="L1", title="ISO 31000", location="ISO 31000",
                  role="framework"),
    ]
    claim = "Businesses above EUR 800,000 turnover must issue structured e-invoices from 2027"
    assert citation_support(claim, ["L0-1", "L1-1"], registry) == (["L0-1", "L1-1"], [])
    assert citation_support(claim, ["L1-1"], registry) == ([], ["L1-1"])  # alone: no
    assert citation_support(claim, ["L0-2"], registry) == ([], ["L0-2"])
    assert citation_support(claim, ["L0-9"], registry) == ([], ["L0-9"])
    body = f"{claim} [L0-1]. Tools cost EUR 7 a month [L0-1; L0-2].\n"
    marked = mark_unsupported(body, [("Tools cost EUR 7 a month [L0-1; L0-2].", ["L0-1"])])
    assert marked == (f"{claim} [L0-1]. Tools cost EUR 7 a month [L0-2]. "
                      "(unsupported citation: L0-1)\n")
    assert uncited_sources("x [L0-2]", registry) == ["L0-1"]  # frameworks are not listed
