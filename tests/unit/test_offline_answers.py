"""The offline provider's counterparts of the prompt templates, and the lexical
grounding they and the citation check share."""

from __future__ import annotations

from pathlib import Path

from activities.grounding import SUPPORT_THRESHOLD, sentences, support_score, title_of
from activities.llm import PROMPTS, template_lines
from activities.offline_answers import (
    AGENT_TEMPLATES,
    OFFLINE_ANSWERS,
    analysis_analyst,
    analysis_citations,
    analysis_outline,
    parse_sources,
)
from workflows.analysis_checks import split_frontmatter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "analysis"


def listing() -> str:
    docs = sorted(p for p in EXAMPLE.glob("*.md") if p.name != "problem.md")
    return "\n\n".join(f"[L0-{i}] (L0) {p.stem} — {p}\n{p.read_text()}"
                       for i, p in enumerate(docs, 1))


def test_every_template_has_an_offline_counterpart():
    shipped = {p.name for p in PROMPTS.glob("*.md")}
    assert set(AGENT_TEMPLATES) <= shipped
    missing = shipped - set(OFFLINE_ANSWERS) - set(AGENT_TEMPLATES)
    assert not missing, f"templates without an offline answer: {sorted(missing)}"
    assert set(OFFLINE_ANSWERS) <= shipped  # no answer for a template that is gone


def test_template_lines_are_the_fixed_wording():
    lines = template_lines()["analysis_citations.md"]
    assert "Answer by calling the tool" in lines
    assert any(line.startswith("You map sources to the claims") for line in lines)
    assert not any("{" in line for ls in template_lines().values() for line in ls)


def test_the_analyst_quotes_relevant_passages_with_their_ids():
    sources = listing()
    text = analysis_analyst({
        "problem": (EXAMPLE / "problem.md").read_text(), "analyst_id": "risk",
        "analyst_name": "Risk analyst", "analyst_reference": "ISO 31000:2018",
        "analyst_focus": "what can go wrong: vulnerabilities, expiry and reuse",
        "sources": sources})
    meta, body = split_frontmatter(text)
    docs = {d.id: " ".join(d.text.split()) for d in parse_sources(sources)}
    quoted = [line for line in body.splitlines() if line.startswith('- "')]
    assert quoted and meta["sources"] and set(meta["sources"]) <= set(docs)
    for line in quoted:
        quote, sid = line[3:].split('" [', 1)
        assert quote in docs[sid[:4]]
    assert meta["references"] == ["ISO 31000:2018"] and meta["provider"] == "offline"
    assert any("vulnerabilities" in q or "expire" in q for q in quoted)


def test_outline_title_and_citations_come_from_the_findings():
    integration = ('### Risk analyst (risk)\n\n- "jwt.decode must be given the list of '
                   'accepted algorithms." [L0-2] [Source: analyst-risk]\n')
    outline = analysis_outline({"problem": "Pick a signer. More text follows here.",
                                "integration": integration})
    assert outline["title"] == "Pick a signer"
    [point] = outline["points"]
    assert point["claim"] == "jwt.decode must be given the list of accepted algorithms."
    assert point["factual"] and point["heading"].startswith("Risk:")
    cited = analysis_citations({"outline": f"P1 [factual] {point['heading']}: "
                                           f"{point['claim']}", "sources": listing()})
    assert cited == {"citations": {"P1": ["L0-2"]}}


def test_support_score_separates_paraphrase_from_another_claim():
    source = (EXAMPLE / "pyjwt.md").read_text()
    assert support_score("jwt.decode raises ExpiredSignatureError when the token has "
                         "expired", source) >= SUPPORT_THRESHOLD
    assert support_score("A token with exp set one hour ahead is refused after an hour",
                         source) >= SUPPORT_THRESHOLD
    assert support_score("Flask depends on itsdangerous to sign the session cookie",
                         source) < SUPPORT_THRESHOLD
    assert support_score("", source) == 0.0


def test_sentences_and_titles():
    text = ("# Heading here\n\nOne sentence is here. Two is\nwrapped over lines.\n"
            "- a list item of words\n")
    assert sentences(text) == ["One sentence is here.", "Two is wrapped over lines.",
                               "a list item of words"]
    assert title_of(text) == "Heading here"
    assert title_of("word " * 40).endswith("…") and len(title_of("word " * 40)) <= 91
