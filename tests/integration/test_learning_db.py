"""The learning database layer on real SQLite and, when TEST_POSTGRES_URL is set
(``.ci/run`` sets it), on real PostgreSQL: migrations, curriculum import, and
idempotent writes keyed by workflow ID and step."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from activities.artifacts import ArtifactStore
from activities.curriculum import CurriculumError, import_curriculum, parse_curriculum
from activities.learning_db import (
    Base,
    Curriculum,
    Item,
    LearningDatabase,
    MasteryHistory,
    Response,
    Test,
    current_revision,
)
from activities.learning_repo import LearningRepository
from models.learning import (
    BeginInput,
    CloseTestInput,
    GeneratedItem,
    MasteryInput,
    OpenTestInput,
    PickItemsInput,
    RemediateInput,
    SetMasteryInput,
    StoreGeneratedInput,
)
from tests.learning_support import FRACTIONS, imported_database

PG_URL = os.environ.get("TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'learning.db'}"
    if not PG_URL:
        pytest.skip("TEST_POSTGRES_URL is not set (`.ci/run` installs PostgreSQL and sets it)")
    db = LearningDatabase(PG_URL)
    with db.engine.begin() as conn:  # a clean schema for each test
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    db.dispose()
    return PG_URL


@pytest.fixture
def repo(db_url, tmp_path) -> LearningRepository:
    db = imported_database(db_url)
    yield LearningRepository(db, ArtifactStore(tmp_path / "artifacts"))
    db.dispose()


def test_migrations_build_the_schema_of_the_models(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = LearningDatabase(db_url)
    db.migrate()
    assert current_revision(db.engine) == "0002"
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []


def test_a_bad_curriculum_is_refused_whole(db_url):
    db = LearningDatabase(db_url)
    data = {"id": "bad", "title": "Bad", "knowledge_components": [
        {"id": "a", "name": "A", "items": [
            {"id": "a-1", "prompt": "1+1?", "answer_type": "numeric", "answer": "two"}]},
        {"id": "b", "name": "B", "prerequisites": ["a", "zzz"], "items": [
            {"id": "a-1", "prompt": "dup", "answer_type": "exact", "answer": "x"},
            {"id": "b-2", "prompt": "no key", "answer_type": "exact"}]},
    ]}
    with pytest.raises(CurriculumError) as err:
        parse_curriculum(data, "bad.yaml")
    # the shape problem and every problem across the file, in one report
    assert err.value.problems[0] == (
        "knowledge_components[1] (id 'b').items[1] (id 'b-2').answer: Field required")
    problems = "\n".join(err.value.problems)
    assert "items[0] (id 'a-1').answer: 'two' is not a number" in problems
    assert "(id 'b').prerequisites: 'zzz' is not a KC of this file" in problems
    assert "(id 'b').items[0] (id 'a-1').id: duplicate item id 'a-1'" in problems
    with db.session() as s:  # nothing was written
        assert s.scalar(select(func.count()).select_from(Curriculum)) == 0
    db.dispose()


def test_problems_name_file_positions_past_invalid_parts():
    """An invalid KC, item or template does not shift the positions named by the
    checks across the file: each problem names the place it has in the file."""
    data = {"id": "p", "title": "P", "knowledge_components": [
        {"name": "no id"},
        {"id": "a", "name": "A", "items": [
            {"id": "a-1", "prompt": "no key", "answer_type": "exact"},
            {"id": "a-2", "prompt": "1+1?", "answer_type": "numeric", "answer": "two"}]},
        {"id": "a", "name": "A again", "items": [
            {"id": "b-1", "prompt": "no type", "answer": "x"},
            {"id": "b-2", "prompt": "?", "answer_type": "exact", "answer": "x"},
            {"id": "a-2", "prompt": "dup", "answer_type": "exact", "answer": "x"}]},
    ]}
    with pytest.raises(CurriculumError) as err:
        parse_curriculum(data)
    assert err.value.problems == [
        "knowledge_components[0].id: Field required",
        "knowledge_components[1] (id 'a').items[0] (id 'a-1').answer: Field required",
        "knowledge_components[2] (id 'a').items[0] (id 'b-1').answer_type: Field required",
        "knowledge_components[1] (id 'a').items[1] (id 'a-2').answer: 'two' is not a number "
        "(numeric items need e.g. 0.75, 3/4 or 1 1/2)",
        "knowledge_components[2] (id 'a').id: duplicate KC id 'a'",
        "knowledge_components[2] (id 'a').items[2] (id 'a-2').id: duplicate item id 'a-2'",
    ]


def test_cycles_and_unknown_misconceptions_are_refused():
    data = {"id": "c", "title": "C", "knowledge_components": [
        {"id": "a", "name": "A", "prerequisites": ["b"]},
        {"id": "b", "name": "B", "prerequisites": ["a"], "items": [
            {"id": "b1", "prompt": "?", "answer_type": "exact", "answer": "x",
             "misconceptions": {"y": "nope"}}]}]}
    with pytest.raises(CurriculumError) as err:
        parse_curriculum(data)
    problems = "\n".join(err.value.problems)
    assert "prerequisites form a cycle: a -> b -> a" in problems
    assert "points to 'nope', which 'b' does not declare" in problems


def test_import_is_one_transaction_and_reimport_updates(db_url):
    db = imported_database(db_url)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 28
    db.dispose()
    db = imported_database(db_url)  # again: the same rows, no duplicates
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Item)) == 28
        spec = parse_curriculum({"id": "fractions", "title": "T", "knowledge_components": [
            {"id": "fraction-meaning", "name": "X", "items": [
                {"id": "fm-1", "prompt": "?", "answer_type": "exact", "answer": "y"}]}]})
    with pytest.raises(RuntimeError), db.session() as s:  # a failure rolls back the import
        import_curriculum(s, spec, "0" * 64)
        raise RuntimeError("crash mid-import")
    with db.session() as s:
        assert s.get(Item, ("fractions", "fm-1")).answer_key == "1/4"
    db.dispose()


def test_writes_are_idempotent_by_workflow_and_step(repo, tmp_path):
    wf = "learn-ana-fractions"
    begin = BeginInput(workflow_id=wf, student="ana", curriculum="fractions")
    kcs = repo.begin(begin)
    assert [k.id for k in kcs][:2] == ["fraction-meaning", "equivalent-fractions"]
    assert kcs[0].mastery == pytest.approx(0.1)
    assert repo.begin(begin) == kcs  # a rerun adds nothing

    picked = repo.pick_items(PickItemsInput(student="ana", curriculum="fractions",
                                            kc="fraction-meaning", count=3))
    assert [i.id for i in picked.items] == ["fm-1", "fm-2", "fm-3"] and picked.shortfall == 0
    test_id = f"{wf}/round-1"
    opened = OpenTestInput(workflow_id=wf, test_id=test_id, round=1, student="ana",
                           curriculum="fractions", kc="fraction-meaning",
                           item_ids=["fm-1", "fm-2", "fm-3"])
    repo.open_test(opened)
    repo.open_test(opened)
    close = CloseTestInput(test_id=test_id, status="answered",
                           answers={"fm-1": "0.25", "fm-2": "5"})
    diagnosis = repo.close_test(close)
    assert [(r.item, r.correct, r.attempted, r.misconception) for r in diagnosis.responses] == [
        ("fm-1", True, True, None), ("fm-2", False, True, "swaps-numerator-denominator"),
        ("fm-3", False, False, "not-attempted")]
    assert repo.close_test(close.model_copy(update={"answers": {}})) == diagnosis

    model = MasteryInput(workflow_id=wf, student="ana", curriculum="fractions",
                         kc="fraction-meaning", responses=diagnosis.responses)
    first = repo.update_mastery(model)
    assert [s.correct for s in first.steps] == [True, False]  # not attempted: no step
    assert first.steps[0].after == pytest.approx(7 / 15)
    assert repo.update_mastery(model) == first  # once per response ID
    history = repo.mastery_history("ana", "fractions")
    assert [h.source for h in history if h.kc_id == "fraction-meaning"] == [
        "prior", "bkt", "bkt"]

    override = SetMasteryInput(workflow_id=wf, step="override-1", student="ana",
                               curriculum="fractions", kc="fraction-meaning", mastery=0.9,
                               actor="ms-lee")
    assert repo.set_mastery(override) == 0.9
    repo.update_mastery(model.model_copy(update={"responses": []}))
    assert repo.set_mastery(override) == 0.9
    assert len(repo.mastery_history("ana", "fractions")) == len(history) + 1

    ref = repo.remediate(RemediateInput(workflow_id=wf, round=1, student="ana",
                                        curriculum="fractions", diagnosis=diagnosis))
    again = repo.remediate(RemediateInput(workflow_id=wf, round=1, student="ana",
                                          curriculum="fractions", diagnosis=diagnosis))
    assert ref == again and ref.practice_items and "fm-1" not in ref.practice_items
    body = Path(ref.artifact.path).read_text()
    assert "swaps-numerator-denominator" in body and "Right answer: 5/6" in body

    # with fm-1..3 seen, only three unseen items are left: a test of five is short by two
    picked = repo.pick_items(PickItemsInput(student="ana", curriculum="fractions",
                                            kc="fraction-meaning", count=5))
    assert picked.shortfall == 2 and [i.id for i in picked.items][:3] == ["fm-4", "fm-6",
                                                                          "fm-5"]


def test_cancel_test_closes_only_an_open_test_once(repo):
    wf = "learn-bo-fractions"
    repo.begin(BeginInput(workflow_id=wf, student="bo", curriculum="fractions"))
    test_id = f"{wf}/round-1"
    assert repo.cancel_test(test_id) is False  # cancelled before the test was written
    repo.open_test(OpenTestInput(workflow_id=wf, test_id=test_id, round=1, student="bo",
                                 curriculum="fractions", kc="fraction-meaning",
                                 item_ids=["fm-1", "fm-2"]))
    assert repo.cancel_test(test_id) is True
    assert repo.cancel_test(test_id) is False  # a rerun changes nothing
    with repo.db.session() as s:
        test = s.get(Test, test_id)
        assert test is not None and test.status == "canceled" and test.closed_at is not None
        assert s.scalar(select(func.count()).select_from(Response)
                        .where(Response.test_id == test_id)) == 0


def test_generated_items_are_validated_before_use(repo):
    inp = StoreGeneratedInput(workflow_id="learn-x-fractions", step="round-1-generate",
                              curriculum="fractions", kc="adding-fractions", items=[
        GeneratedItem(kc="adding-fractions", prompt="What is 1/5 + 3/5?",
                      answer_type="numeric", answer="4/5"),
        GeneratedItem(kc="comparing-fractions", prompt="x", answer_type="exact", answer="y"),
        GeneratedItem(kc="adding-fractions", prompt="What is 1/2 + 1/2?",
                      answer_type="numeric", answer="one"),
        GeneratedItem(kc="adding-fractions", prompt="Pick", answer_type="multiple_choice",
                      answer="c", choices=["a", "b"]),
        GeneratedItem(kc="adding-fractions", prompt="What is 2/5 + 1/5?",
                      answer_type="numeric", answer="3/5"),  # repeats af-2
        GeneratedItem(kc="adding-fractions", prompt="No key", answer_type="exact", answer=" "),
        GeneratedItem(kc="adding-fractions", prompt="Q", answer_type="essay", answer="y"),
        GeneratedItem(  # the item: prompt-template fragments as prompt and key
            kc="adding-fractions", answer_type="multiple_choice",
            prompt="text of the right choice); - `choices`: the options of a multiple-choice",
            answer="text of the right choice); - `choices`: the options of a multiple-choice",
            choices=["text of the right choice); - `choices`: the options of a "
                     "multiple-choice", "`answer`: the answer key"]),
        GeneratedItem(kc="adding-fractions", prompt="What is {a} + {b}?",
                      answer_type="numeric", answer="3"),
    ])
    stored = repo.store_generated(inp)
    assert [i.prompt for i in stored.items] == ["What is 1/5 + 3/5?"]
    assert stored.items[0].origin == "generated"
    assert len(stored.refused) == 8
    assert "tagged with KC 'comparing-fractions'" in stored.refused[0]
    assert "not a number" in stored.refused[1]
    assert "one of them the answer key" in stored.refused[2]
    assert "repeats the prompt" in stored.refused[3]
    assert "no answer key" in stored.refused[4]
    assert "unknown answer type 'essay'" in stored.refused[5]
    assert "prompt contains prompt-template text" in stored.refused[6]
    assert "unfilled" in stored.refused[7] or "'{a}'" in stored.refused[7]
    assert repo.store_generated(inp).items == stored.items  # a rerun stores nothing new
    with repo.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Item).where(
            Item.origin == "generated")) == 1
        assert s.scalar(select(func.count()).select_from(Response)) == 0
        assert s.scalar(select(func.count()).select_from(MasteryHistory)) == 0


def test_fractions_curriculum_meets_the_brief():
    from activities.curriculum import read_curriculum

    spec, _ = read_curriculum(FRACTIONS)
    assert len(spec.knowledge_components) >= 4
    assert sum(bool(kc.prerequisites) for kc in spec.knowledge_components) >= 3
    assert all(len(kc.items) >= 5 for kc in spec.knowledge_components)
