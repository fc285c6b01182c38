"""Benchmark: the content of what the offline pipelines produce, not their speed.

``python bench/analysis_quality.py [--students N] [--rounds N]`` runs AnalysisWorkflow
offline (on a dev server of its own, every gate approved) on the repository's sample
sources (``examples/analysis``: a library choice; ``tests/fixtures/analysis``: a
market entry), draws learning items from the item templates of
``curricula/fractions.yaml`` for N students x N rounds, and checks a batch of
LLM-style items (some broken the way real ones were), then prints JSON:

* ``citations_resolvable``: share of the reports' inline citations naming a loaded
  or fetched source (target 1.0);
* ``citations_supported``: share of (cited sentence, source) pairs whose source
  supports the sentence (``activities.analysis.citation_support``, on the texts the
  run stored; a citation marked unsupported in the report counts as unsupported;
  target >= 0.9);
* ``loaded_sources_cited_or_listed``: share of loaded documents that the report
  cites or lists under ``uncited_sources`` (target 1.0); ``loaded_sources_cited``
  is the share actually cited;
* ``prompt_lines_in_reports``: lines of the prompt templates found in the reports
  (target 0);
* ``items``: generated items accepted and refused (templates and the LLM-style
  batch), and ``incorrect_items_served``: accepted items whose key is not accepted
  by their own scorer, or whose known wrong answers are (target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from activities.analysis import citation_support, cited_sentences
from activities.artifacts import ArtifactStore
from activities.curriculum import import_curriculum, read_curriculum
from activities.learning_db import Item, KnowledgeComponent, LearningDatabase
from activities.learning_repo import LearningRepository
from activities.learning_scoring import score_answer
from activities.llm import template_lines
from bench.analysis import approve_gates
from cli.analysis import analysis_request, start_analysis
from models.analysis import SourceDoc
from models.learning import AnswerType, GeneratedItem, StoreGeneratedInput, TemplateItemsInput
from settings import Settings
from temporal_plumbing.environments import start_local_env
from worker import make_worker
from workflows import analysis_checks as checks

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = [ROOT / "examples" / "analysis", ROOT / "tests" / "fixtures" / "analysis"]
CURRICULUM = ROOT / "curricula" / "fractions.yaml"
UNSUPPORTED_MARK = re.compile(r"\(unsupported citation: ([^)]*)\)")

# LLM-style items for adding-fractions: good ones, and the failures seen in practice
LLM_BATCH = [
    GeneratedItem(kc="adding-fractions", prompt="What is 2/9 + 5/9?", answer_type="numeric",
                  answer="7/9"),
    GeneratedItem(kc="adding-fractions", prompt="Which sum equals 1?",
                  answer_type="multiple_choice", answer="1/2 + 1/2",
                  choices=["1/2 + 1/2", "1/3 + 1/3", "1/4 + 2/4"]),
    GeneratedItem(kc="adding-fractions", answer_type="multiple_choice",
                  prompt="text of the right choice); - `choices`: the options of a "
                         "multiple-choice",
                  answer="text of the right choice); - `choices`: the options of a "
                         "multiple-choice",
                  choices=["`answer`: the answer key", "text of the right choice); - "
                           "`choices`: the options of a multiple-choice"]),
    GeneratedItem(kc="adding-fractions", prompt="What is 1/3 + 1/3?",
                  answer_type="multiple_choice", answer="2/3", choices=["2/6", "1/3"]),
    GeneratedItem(kc="adding-fractions", prompt="What is 3/8 + 1/8?", answer_type="numeric",
                  answer="one half"),
    GeneratedItem(kc="adding-fractions", prompt="What is {a}/{d} + {b}/{d}?",
                  answer_type="numeric", answer="3/4"),
]


def report_figures(report: str, cmap: dict[str, Any]) -> dict[str, Any]:
    """Citation, coverage and prompt-text counts of one report and its citation map."""
    meta, body = checks.split_frontmatter(report)
    registry = [SourceDoc.model_validate(s) for s in cmap["sources"]]
    registry = [s.model_copy(update={"text": Path(s.text_ref.path).read_text()})
                if s.text_ref else s for s in registry]  # texts travel by reference
    known = {s.id for s in registry}
    cited = checks.inline_citations(body)
    pairs = supported = 0
    for sentence, ids in cited_sentences(body):
        good, bad = citation_support(sentence, ids, registry)
        pairs += len(good) + len(bad)
        supported += len(good)
    marked = sum(len(m.split(",")) for m in UNSUPPORTED_MARK.findall(body))
    loaded = [s.id for s in registry if s.level == "L0"]
    listed = set(meta.get("sources", [])) | set(meta.get("uncited_sources", []))
    lines = [line for ls in template_lines().values() for line in ls if line in report]
    return {"citations": len(cited), "resolvable": sum(c in known for c in cited),
            "pairs": pairs + marked, "supported": supported, "loaded": len(loaded),
            "loaded_cited": sum(s in set(cited) for s in loaded),
            "loaded_cited_or_listed": sum(s in listed for s in loaded),
            "prompt_lines": lines, "title": meta.get("title", "")}


async def analyses() -> list[dict[str, Any]]:
    """Run the pipeline offline on each sample; the figures of each report."""
    env = await start_local_env()
    out = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(_env_file=None, orchestrator_home=Path(tmp),
                                temporal_task_queue="bench-quality", llm_provider="offline")
            async with make_worker(env.client, settings):
                for n, sample in enumerate(SAMPLES):
                    docs = sorted(str(p) for p in sample.glob("*.md") if p.name != "problem.md")
                    req = analysis_request(settings, problem=(sample / "problem.md").read_text(),
                                           title=f"quality {n}", sources=docs, budget_usd=None)
                    handle = await start_analysis(env.client, settings, req,
                                                  slug=f"quality-{n}-{id(req)}")
                    await approve_gates(handle)
                    result = await handle.result()
                    report = Path(result.report.path).read_text()
                    cmap = json.loads(Path(result.citation_map.path).read_text())
                    out.append({"sample": sample.relative_to(ROOT).as_posix(),
                                "synthesizer": result.synthesizer,
                                "analysts": result.analysts,
                                **report_figures(report, cmap)})
    finally:
        await env.shutdown()
    return out


def item_incorrect(row: Item) -> str | None:
    """Why a stored item is not correct, or None: its key must score as right under
    its own scorer, and none of its known wrong answers may."""
    kind = AnswerType(row.answer_type)
    if not score_answer(row.answer_key, kind, row.answer_key, choices=row.choices,
                        tolerance=row.tolerance):
        return "its key is not accepted"
    wrong = [w for w in row.misconceptions] + [c for c in row.choices if c != row.answer_key]
    if any(score_answer(w, kind, row.answer_key, choices=row.choices,
                        tolerance=row.tolerance) for w in wrong):
        return "a wrong answer is accepted"
    return None


def items(students: int, rounds: int) -> dict[str, Any]:
    """Draw template items and check the LLM-style batch on a scratch database."""
    with tempfile.TemporaryDirectory() as tmp:
        db = LearningDatabase(f"sqlite:///{tmp}/quality.db")
        spec, sha = read_curriculum(CURRICULUM)
        with db.session() as s:
            import_curriculum(s, spec, sha)
            kcs = [k.id for k in s.query(KnowledgeComponent).all() if k.item_templates]
        repo = LearningRepository(db, ArtifactStore(Path(tmp) / "artifacts"))
        drawn = refused = 0
        for student in range(students):
            for number in range(1, rounds + 1):
                for kc in kcs:
                    stored = repo.store_template_items(TemplateItemsInput(
                        workflow_id="bench", student=f"s{student}", curriculum=spec.id, kc=kc,
                        round=number, count=3))
                    drawn += len(stored.items)
                    refused += len(stored.refused)
        batch = repo.store_generated(StoreGeneratedInput(
            workflow_id="bench", step="llm-batch", curriculum=spec.id, kc="adding-fractions",
            items=LLM_BATCH))
        with db.session() as s:
            served = s.query(Item).filter(Item.origin.in_(["template", "generated"])).all()
            wrong = [(i.id, why) for i in served if (why := item_incorrect(i))]
        db.dispose()
    return {"template_items_accepted": drawn, "template_items_refused": refused,
            "llm_items_accepted": len(batch.items), "llm_items_refused": len(batch.refused),
            "llm_refusals": batch.refused, "items_served": len(served),
            "incorrect_items_served": len(wrong), "incorrect": wrong[:5]}


def ratio(num: int, den: int) -> float:
    return round(num / den, 3) if den else 1.0


async def run(students: int = 5, rounds: int = 3) -> dict[str, Any]:
    """Run the benchmark; returns the JSON figures (with ``targets``)."""
    reports = await analyses()
    learning = items(students, rounds)
    total = {k: sum(r[k] for r in reports) for k in (
        "citations", "resolvable", "pairs", "supported", "loaded", "loaded_cited",
        "loaded_cited_or_listed")}
    prompt_lines = sum(len(r["prompt_lines"]) for r in reports)
    figures = {
        "citations_resolvable": ratio(total["resolvable"], total["citations"]),
        "citations_supported": ratio(total["supported"], total["pairs"]),
        "loaded_sources_cited": ratio(total["loaded_cited"], total["loaded"]),
        "loaded_sources_cited_or_listed": ratio(total["loaded_cited_or_listed"],
                                                total["loaded"]),
        "prompt_lines_in_reports": prompt_lines,
    }
    targets = [
        ("citations_resolvable", ">=", 1.0, figures["citations_resolvable"]),
        ("citations_supported", ">=", 0.9, figures["citations_supported"]),
        ("loaded_sources_cited_or_listed", ">=", 1.0,
         figures["loaded_sources_cited_or_listed"]),
        ("prompt_lines_in_reports", "<=", 0, prompt_lines),
        ("incorrect_items_served", "<=", 0, learning["incorrect_items_served"]),
    ]
    return {
        "benchmark": "analysis_quality", "provider": "offline",
        **figures, "reports": reports, "items": learning,
        "targets": [{"name": name, "target": f"{op} {goal}", "measured": got,
                     "met": got >= goal if op == ">=" else got <= goal}
                    for name, op, goal, got in targets],
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.students, args.rounds)), indent=2))


if __name__ == "__main__":
    main()
