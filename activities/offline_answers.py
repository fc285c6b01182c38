"""The offline counterpart of every prompt template the workflows send to ``llm_complete``.

Without an API key the :class:`~activities.llm.OfflineProvider` answers each
request with the function registered here under the request's template name:
deterministic, extractive output built from the request's variables (the
problem, the loaded sources, the catalogue's descriptions), never from the
prompt's own wording. A template without an entry here (and without an
``offline`` front-matter answer) is refused offline, so a new phase cannot fall
back to filler text; ``tests/unit/test_offline_answers.py`` checks the registry
covers every template under ``prompts/`` except :data:`AGENT_TEMPLATES`.

Each function takes the request's variables and returns the answer: a dict for a
structured request (validated against the request's schema by the provider),
else markdown text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.grounding import (
    SUPPORT_THRESHOLD,
    Passage,
    passages,
    rank,
    strip_citations,
    support_score,
    terms,
    title_of,
)
from activities.learning_scoring import grade_free_text

OfflineAnswer = Callable[[dict[str, Any]], "dict[str, Any] | str"]

AGENT_TEMPLATES = {
    "sdlc_spec.md": "the SDLC spec agent's instructions; agent runners, not llm_complete, "
                    "use it, and the offline agent runner writes its own spec",
    "sdlc_spec_api.md": "the Anthropic API agent runner's system prompt (agent runners only)",
    "agent_task.md": "a workstream agent step's own instructions (agent runners only; the "
                     "offline agent runner restates them)",
    "agent_task_api.md": "the Anthropic API agent runner's prompt for a workstream agent "
                         "step's own instructions (agent runners only)",
}
"""Templates that never reach ``llm_complete`` and so need no offline answer."""

FINDINGS_PER_ANALYST = 4
MIN_ANALYSTS = 2  # analysts chosen offline, the synthesizer's defaults fill up to it
MAX_OUTLINE_POINTS = 12
_HEADER = re.compile(r"^\[(L[0-2]-\d+)\] \((L[0-2])\) (.*?)(?: — (.*))?$", re.M)
_FINDING = re.compile(r'^- "(?P<quote>.+)" \[(?P<ids>L[0-2]-\d+(?:; L[0-2]-\d+)*)\]'
                      r"(?: \[Source: analyst-(?P<analyst>[\w-]+)\])?"
                      r"(?: \(quoted by [^)]*\))?$", re.M)
_ANALYST_SECTION = re.compile(r"^### (?P<name>.+?) \((?P<id>[\w-]+)\)$", re.M)
_OUTLINE_LINE = re.compile(r"^(P\d+) \[(factual|opinion)\] (.*?): (.*)$", re.M)


@dataclass(frozen=True)
class Source:
    """A source as the workflow lists it in a prompt: id, level, title and text."""

    id: str
    level: str
    title: str
    text: str


def parse_sources(listing: str) -> list[Source]:
    """The sources of a listing made by ``AnalysisWorkflow._source_listing``: blocks
    ``[ID] (LEVEL) title — location`` followed by the source's text; "(none)" -> []."""
    heads = list(_HEADER.finditer(listing))
    out = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(listing)
        out.append(Source(m.group(1), m.group(2), m.group(3).strip(),
                          listing[m.end():end].strip()))
    return out


def _catalogue_lines(listing: str) -> list[tuple[str, str, dict[str, list[str]]]]:
    """``- id: name — description (templates: a, b; analysts: c, d)`` lines ->
    (id, "name description", {"templates": [...], ...})."""
    out = []
    for line in listing.splitlines():
        m = re.match(r"-\s*([\w-]+):\s*(.*?)(?:\s*\((\w+:.*)\))?\s*$", line)
        if not m:
            continue
        extras: dict[str, list[str]] = {}
        for part in (m.group(3) or "").split(";"):
            key, _, values = part.partition(":")
            if values:
                extras[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
        out.append((m.group(1), m.group(2).replace(" — ", " "), extras))
    return out


def _similarities(query: str, docs: dict[str, str]) -> dict[str, float]:
    """BM25 of ``query`` against each doc, scaled so the best is 1.0 (all 0 when
    no doc shares a term with the query), rounded to 3 places."""
    ranked = rank(query, [Passage(k, k, i, v) for i, (k, v) in enumerate(docs.items())])
    top = ranked[0][1] if ranked else 0.0
    scores = {k: 0.0 for k in docs}
    for p, s in ranked:
        scores[p.source_id] = round(s / top, 3) if top else 0.0
    return scores


# -- the analysis pipeline -----------------------------------------------------------
def analysis_parse(v: dict[str, Any]) -> dict[str, Any]:
    """Synthesizer scores by BM25 similarity of the problem (and clarifications) to
    each synthesizer's name, description and keywords; its default template; the
    analysts whose lens is most similar to the problem; the source need from how
    many of the problem's terms the loaded documents contain."""
    query = f"{v['problem']}\n{v.get('clarifications', '')}".replace("(none)", "")
    synths = _catalogue_lines(v["synthesizers"])
    scores = _similarities(query, {sid: f"{text} {' '.join(x.get('keywords', []))}"
                                   for sid, text, x in synths})
    best = max(synths, key=lambda s: (scores[s[0]], -synths.index(s)))
    templates = [t for t, _, _ in _catalogue_lines(v["templates"])]
    template = next((t for t in best[2].get("templates", []) if t in templates), templates[0])
    out: dict[str, Any] = {"scores": scores, "template": template}
    analysts = _catalogue_lines(v.get("analysts", ""))
    if analysts:
        default = best[2].get("analysts", [])
        fit = _similarities(query, {aid: text for aid, text, _ in analysts})
        order = sorted(analysts, key=lambda a: (-fit[a[0]], a[0] not in default,
                                                analysts.index(a)))
        chosen = [a[0] for a in order if fit[a[0]] > 0][:max(len(default), MIN_ANALYSTS)]
        chosen += [a for a in default if a not in chosen][:max(MIN_ANALYSTS - len(chosen), 0)]
        out["analysts"] = chosen or [order[0][0]]
    docs = parse_sources(v.get("sources", ""))
    wanted = set(terms(v["problem"]))
    found = set().union(*(terms(d.text) for d in docs)) if docs else set()
    share = len(wanted & found) / len(wanted) if wanted else 0.0
    need = "HIGH" if not docs or share < 0.3 else "MEDIUM" if share < 0.6 else "LOW"
    out["source_need"] = need
    out["source_need_reason"] = (
        f"{len(docs)} document(s) loaded; they contain {round(share * 100)}% of the "
        "problem's key terms")
    return out


def analysis_questions(v: dict[str, Any]) -> dict[str, Any]:
    """One question that tells the two candidate synthesizers apart by their
    catalogue descriptions."""
    cands = _catalogue_lines(v["candidates"])
    described = [re.split(r"\s{2,}| — ", text, maxsplit=1)[-1] for _, text, _ in cands]
    if len(described) < 2:
        return {"questions": ["Which outcome should the analysis support?"]}
    return {"questions": [f"Is the decision mainly about {described[0]}, or about "
                          f"{described[1]}?"]}


def analysis_proposal(v: dict[str, Any]) -> dict[str, Any]:
    """What the plan will deliver, from the plan's own fields and the problem's title."""
    docs = parse_sources(v.get("sources", ""))
    listed = ", ".join(d.id for d in docs) or "no documents"
    return {
        "summary": (f"A {v['template_name']} on \"{title_of(v['problem'])}\", written by "
                    f"the {v['synthesizer_name']} synthesizer from the {v['analysts']} "
                    f"analysts, quoting {listed}."),
        "rationale": (f"{v['synthesizer_name']} is the synthesizer whose catalogue "
                      "description is closest to the problem's wording; each analyst "
                      "quotes the passages of the sources most relevant to its lens "
                      f"(web search {v['web_search']})."),
    }


def analysis_analyst(v: dict[str, Any]) -> str:
    """The passages of the loaded sources most relevant (BM25) to the problem seen
    through the analyst's focus, quoted with their source ids; the analyst's
    catalogue reference is listed as a framework reference, never as evidence."""
    docs = [d for d in parse_sources(v["sources"]) if d.level in ("L0", "L2")]
    candidates = [p for d in docs for p in passages(d.id, d.title, d.text)]
    found = lens_rank(v["analyst_focus"], v["problem"], candidates)[:FINDINGS_PER_ANALYST]
    found.sort(key=lambda x: (x[0].source_id, x[0].index))
    cited = list(dict.fromkeys(p.source_id for p, _ in found))
    confidence = "high" if len(cited) >= 2 and len(found) >= 3 else \
        "medium" if found else "low"
    meta = {"analyst": v["analyst_id"], "confidence": confidence, "sources": cited,
            "references": [v["analyst_reference"]] if v.get("analyst_reference") else [],
            "provider": "offline"}
    lines = [f"## {v['analyst_name']}", "",
             f"Lens: {v['analyst_focus']}. Passages of the loaded sources most relevant "
             "to this lens, quoted:", ""]
    lines += [f'- "{p.text}" [{p.source_id}] [Source: analyst-{v["analyst_id"]}]'
              for p, _ in found]
    if not found:
        lines.append(f"No passage of the loaded sources addresses {v['analyst_focus']}.")
    return "---\n" + json.dumps(meta) + "\n---\n" + "\n".join(lines) + "\n"


LENS_WEIGHT = 2.0  # the analyst's focus counts twice the problem in its ranking


def lens_rank(focus: str, problem: str, candidates: list[Passage]
              ) -> list[tuple[Passage, float]]:
    """``candidates`` ranked for one analyst: BM25 relevance to its focus and to the
    problem, each scaled to a best of 1.0, weighted LENS_WEIGHT : 1; a passage must
    be relevant to the problem (so a lens word alone does not pull in off-topic
    text). Best first; ties keep the candidates' order."""
    def scaled(query: str) -> dict[int, float]:
        ranked = rank(query, candidates)
        top = ranked[0][1] if ranked else 0.0
        return {id(p): s / top for p, s in ranked} if top else {}

    lens, topic = scaled(focus), scaled(problem)
    scored = [(p, LENS_WEIGHT * lens.get(id(p), 0.0) + topic[id(p)], i)
              for i, p in enumerate(candidates) if id(p) in topic]
    scored.sort(key=lambda x: (-x[1], x[2]))
    return [(p, s) for p, s, _ in scored]


def _findings(text: str) -> list[tuple[str, str, list[str]]]:
    """(analyst id, quote, source ids) of every quoted finding in ``text``, in order;
    the analyst is the enclosing ``### Name (id)`` section or the line's marker."""
    sections = [(m.start(), m.group("id")) for m in _ANALYST_SECTION.finditer(text)]
    out = []
    for m in _FINDING.finditer(text):
        owner = m.group("analyst") or next(
            (aid for start, aid in reversed(sections) if start < m.start()), "")
        out.append((owner, m.group("quote"), m.group("ids").split("; ")))
    return out


def analysis_integrate(v: dict[str, Any]) -> str:
    """The analysts' findings merged: passages quoted by more than one analyst
    first (where they agree), then each analyst's own, with their markers."""
    found = _findings(v["analyst_sections"])
    by_quote: dict[str, list[str]] = {}
    ids: dict[str, list[str]] = {}
    for aid, quote, sids in found:
        by_quote.setdefault(quote, [])
        if aid not in by_quote[quote]:
            by_quote[quote].append(aid)
        ids[quote] = sids
    shared = [q for q, owners in by_quote.items() if len(owners) > 1]
    lines = ["## Findings several analysts share", ""]
    lines += [f'- "{q}" [{"; ".join(ids[q])}] [Source: analyst-{by_quote[q][0]}] '
              f"(quoted by {', '.join(by_quote[q])})" for q in shared] or ["- none"]
    for m in _ANALYST_SECTION.finditer(v["analyst_sections"]):
        own = [(q, s) for a, q, s in found if a == m.group("id") and q not in shared]
        lines += ["", f"### {m.group('name')} ({m.group('id')})", ""]
        lines += [f'- "{q}" [{"; ".join(s)}] [Source: analyst-{m.group("id")}]'
                  for q, s in own] or ["- no findings of its own"]
    lines += ["", f"Perspectives missing from this analysis: {v['missing']}."]
    return "\n".join(lines) + "\n"


def analysis_outline(v: dict[str, Any]) -> dict[str, Any]:
    """The default outline: the problem's first heading or sentence as the title,
    and one factual point per distinct finding of the integration (at most
    :data:`MAX_OUTLINE_POINTS`), headed by the lens that found it and the source.
    Without findings, one opinion point restating the question."""
    names = {m.group("id"): m.group("name").removesuffix(" analyst")
             for m in _ANALYST_SECTION.finditer(v["integration"])}
    points, seen = [], set()
    for aid, quote, _ in _findings(v["integration"]):
        if quote in seen:
            continue
        seen.add(quote)
        lens = names.get(aid, aid.capitalize() or "Evidence")
        words = [w for w in re.findall(r"[\w'-]+", quote)][:7]
        points.append({"heading": f"{lens}: {' '.join(words)}", "claim": quote,
                       "factual": True})
    if not points:
        points = [{"heading": "Question", "claim": title_of(v["problem"], 200),
                   "factual": False}]
    return {"title": title_of(v["problem"]), "points": points[:MAX_OUTLINE_POINTS]}


def analysis_citations(v: dict[str, Any]) -> dict[str, Any]:
    """For each factual point, the sources (at most two, best first) whose best
    passage supports its claim at or above SUPPORT_THRESHOLD; frameworks (L1)
    carry no text and are never cited as support."""
    docs = [d for d in parse_sources(v["sources"]) if d.text]
    citations: dict[str, list[str]] = {}
    for pid, kind, _heading, claim in _OUTLINE_LINE.findall(v["outline"]):
        citations[pid] = []
        if kind != "factual":
            continue
        scored = sorted(((support_score(strip_citations(claim), d.text), i, d.id)
                         for i, d in enumerate(docs)), key=lambda x: (-x[0], x[1]))
        citations[pid] = [sid for score, _, sid in scored if score >= SUPPORT_THRESHOLD][:2]
    return {"citations": citations}


def analysis_full_text(v: dict[str, Any]) -> str:
    """The report: frontmatter, the title, the draft (each point's claim with its
    citations) and the integrated findings as evidence."""
    meta = {"title": v["title"], "date": v["date"], "synthesizer": v["synthesizer"],
            "template": v["template"], "language": v["language"], "provider": "offline",
            "sources": json.loads(v["source_ids"])}
    body = [f"# {v['title']}", "", v["draft"].strip(), "", "## Evidence by analyst", ""]
    integration = re.sub(r"^## Findings several analysts share\n\n- none\n\n?", "",
                         v["integration"].strip(), flags=re.M)
    body.append(re.sub(r"^(#{2,3}) ", "### ", integration, flags=re.M))
    return "---\n" + json.dumps(meta, ensure_ascii=False) + "\n---\n\n" + "\n".join(body) + "\n"


def analysis_citation_judge(v: dict[str, Any]) -> dict[str, Any]:
    """The lexical verdict (the support score against the cited passages reaches
    SUPPORT_THRESHOLD) for each claim of ``claims_json``: the same rule as the
    workflow's own check, so offline the judge never overrules it."""
    verdicts = []
    for n, item in enumerate(json.loads(v["claims_json"]), 1):
        scores = [support_score(strip_citations(item["claim"]), text)
                  for text in item["passages"].values()]
        best = max(scores, default=0.0)
        verdicts.append({"claim": n, "supported": best >= SUPPORT_THRESHOLD,
                         "reason": f"best lexical support {best:.2f} (threshold "
                                   f"{SUPPORT_THRESHOLD})"})
    return {"verdicts": verdicts}


# -- the learning loop -----------------------------------------------------------------
def learning_generate_items(v: dict[str, Any]) -> dict[str, Any]:
    """Offline, the LLM item generator is off: the curriculum's item templates
    (generated by the learning store) and its bank are used instead."""
    raise ApplicationError(
        "the offline provider does not write items; the curriculum's item templates "
        "and bank are used (set ANTHROPIC_API_KEY to generate items with a model)",
        type="OfflineGenerationOff", non_retryable=True)


def learning_grade_free_text(v: dict[str, Any]) -> dict[str, Any]:
    """Equivalence grading (normalised text, numbers within tolerance, the item's
    listed alternatives): :func:`activities.learning_scoring.grade_free_text`."""
    alternatives = [a.strip() for a in str(v.get("alternatives", "")).split(";")
                    if a.strip() and a.strip() != "(none)"]
    correct = grade_free_text(v["answer"], v["answer_key"], alternatives)
    return {"correct": correct, "misconception": "",
            "feedback": "Correct." if correct else f"The expected answer is {v['answer_key']}."}


OFFLINE_ANSWERS: dict[str, OfflineAnswer] = {
    "analysis_parse.md": analysis_parse,
    "analysis_questions.md": analysis_questions,
    "analysis_proposal.md": analysis_proposal,
    "analysis_analyst.md": analysis_analyst,
    "analysis_integrate.md": analysis_integrate,
    "analysis_outline.md": analysis_outline,
    "analysis_citations.md": analysis_citations,
    "analysis_full_text.md": analysis_full_text,
    "analysis_citation_judge.md": analysis_citation_judge,
    "learning_generate_items.md": learning_generate_items,
    "learning_grade_free_text.md": learning_grade_free_text,
}
"""Template file name -> its offline answer."""

