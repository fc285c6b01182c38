"""Curriculum files (YAML or JSON): read, validate as a whole, import in one transaction.

A file is refused as a whole when anything in it is wrong: every problem is
reported, each naming the KC, item and field (``knowledge_components[1] (id
'compare').items[0] (id 'cmp-1').answer: Field required``), and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.item_templates import TemplateError, draw, item_problem
from activities.learning_db import (
    Curriculum,
    Item,
    KcPrerequisite,
    KnowledgeComponent,
    LearningDatabase,
    utcnow,
)
from activities.learning_scoring import parse_number
from models.graph import find_cycle
from models.learning import (
    AnswerType,
    CurriculumSpec,
    ItemSpec,
    ItemTemplate,
    KnowledgeComponentSpec,
)
from models.text import NotUtf8Error, decode_utf8


class CurriculumError(ValueError):
    """A curriculum file is invalid; ``problems`` lists each error, naming its place."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s), nothing imported: "
                         + "; ".join(problems))


def _place(data: Any, loc: tuple[Any, ...]) -> str:
    """``('knowledge_components', 1, 'items', 0, 'answer')`` -> a readable path that
    names the KC and item by their IDs where the file gives them."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            ident = node.get("id") if isinstance(node, dict) else None
            parts[-1] += f"[{key}]" + (f" (id {ident!r})" if ident else "")
        else:
            node = node.get(key) if isinstance(node, dict) else None
            parts.append(str(key))
    return ".".join(parts) or "file"


def parse_curriculum(data: Any, source: str = "curriculum") -> CurriculumSpec:
    """Validate curriculum data (as loaded from YAML or JSON) as a whole.

    Checks the shape of every field, then across the file: KC and item IDs are
    unique, prerequisites name KCs of the file and form no cycle, numeric answer
    keys are numbers, the misconceptions items point to are declared by their KC,
    and every item template draws (its expressions evaluate, its constraints can
    be met, its answers pass the same checks as a generated item's).

    Raises:
        CurriculumError: listing every problem found.
    """
    if not isinstance(data, dict):
        raise CurriculumError(source, ["the file must hold a mapping with id, title and "
                                       "knowledge_components"])
    try:
        spec = CurriculumSpec.model_validate(data)
    except ValidationError as err:
        problems = [f"{_place(data, tuple(e['loc']))}: {e['msg']}" for e in err.errors()]
        # the checks across the file still run over every KC whose own shape is valid,
        # so one run lists every problem rather than one layer of them per fix
        raw_kcs = data.get("knowledge_components")
        raw_kcs = raw_kcs if isinstance(raw_kcs, list) else []
        valid = [kc for i, raw in enumerate(raw_kcs) if (kc := _valid_part_of(i, raw))]
        raw_ids = [raw.get("id") if isinstance(raw, dict) else None for raw in raw_kcs]
        problems += _file_problems(valid, [None if x is None else str(x) for x in raw_ids])
        raise CurriculumError(source, problems) from None
    problems = _file_problems([_Placed(i, kc, list(range(len(kc.items))),
                                       list(range(len(kc.templates))))
                               for i, kc in enumerate(spec.knowledge_components)],
                              [kc.id for kc in spec.knowledge_components])
    if problems:
        raise CurriculumError(source, problems)
    return spec


class _Placed(NamedTuple):
    """A KC whose own shape is valid, with the file positions of what it kept:
    ``kc.items[j]`` is item ``items[j]`` of the file, ``kc.templates[j]`` is
    template ``templates[j]``, and the KC is ``knowledge_components[position]``."""

    position: int
    kc: KnowledgeComponentSpec
    items: list[int]
    templates: list[int]


def _valid_part_of(position: int, raw: Any) -> _Placed | None:
    """The KC ``raw`` (at ``position`` in the file) validated, without those of its
    items and templates that are invalid on their own (their problems are already
    reported), with the file positions of the items and templates kept; None when
    the KC itself is invalid even then."""
    try:
        kc = KnowledgeComponentSpec.model_validate(raw)
        return _Placed(position, kc, list(range(len(kc.items))),
                       list(range(len(kc.templates))))
    except ValidationError:
        pass
    if not isinstance(raw, dict):
        return None
    kept = dict(raw)
    places: dict[str, list[int]] = {"items": [], "templates": []}
    for key, model in (("items", ItemSpec), ("templates", ItemTemplate)):
        if isinstance(raw.get(key), list):
            places[key] = [j for j, x in enumerate(raw[key]) if _validates(model, x)]
            kept[key] = [raw[key][j] for j in places[key]]
    try:
        kc = KnowledgeComponentSpec.model_validate(kept)
    except ValidationError:
        return None
    return _Placed(position, kc, places["items"], places["templates"])


def _validates(model: type[BaseModel], data: Any) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


def _file_problems(kcs: list[_Placed], kc_ids: Sequence[str | None]) -> list[str]:
    """The problems across a curriculum file: duplicate KC and item IDs, unknown or
    self prerequisites, numeric answers that are not numbers, undeclared
    misconceptions, templates that do not draw, prerequisite cycles.

    Args:
        kcs: every KC whose own shape is valid, with its file positions.
        kc_ids: the ID of every KC of the file (valid or not; None where it has
            none), one per position in the file.
    """
    problems: list[str] = []
    seen_items: set[str] = set()
    for i, kc, item_places, template_places in kcs:
        where = f"knowledge_components[{i}] (id {kc.id!r})"
        if kc_ids.count(kc.id) > 1 and kc_ids.index(kc.id) != i:
            problems.append(f"{where}.id: duplicate KC id {kc.id!r}")
        for pre in kc.prerequisites:
            if pre not in kc_ids:
                problems.append(f"{where}.prerequisites: {pre!r} is not a KC of this file")
            elif pre == kc.id:
                problems.append(f"{where}.prerequisites: a KC cannot be its own prerequisite")
        declared = {m.id for m in kc.misconceptions}
        for j, item in zip(item_places, kc.items, strict=True):
            item_where = f"{where}.items[{j}] (id {item.id!r})"
            if item.id in seen_items:
                problems.append(f"{item_where}.id: duplicate item id {item.id!r}")
            seen_items.add(item.id)
            if item.answer_type == AnswerType.NUMERIC and parse_number(item.answer) is None:
                problems.append(f"{item_where}.answer: {item.answer!r} is not a number "
                                "(numeric items need e.g. 0.75, 3/4 or 1 1/2)")
            for wrong, misconception in item.misconceptions.items():
                if misconception not in declared:
                    problems.append(f"{item_where}.misconceptions: {wrong!r} points to "
                                    f"{misconception!r}, which {kc.id!r} does not declare")
        for j, template in zip(template_places, kc.templates, strict=True):
            t_where = f"{where}.templates[{j}] (id {template.id!r})"
            if template.id in seen_items:
                problems.append(f"{t_where}.id: duplicate item or template id {template.id!r}")
            seen_items.add(template.id)
            problems += [f"{t_where}.misconceptions: {m!r} is not declared by {kc.id!r}"
                         for m in template.misconceptions.values() if m not in declared]
            problems += [f"{t_where}.misconceptions: {e!r} is not one of its distractors"
                         for e in template.misconceptions if e not in template.distractors]
            for sample in range(3):  # a few draws: expressions, constraints, checks
                try:
                    item, _ = draw(template, kc.id, f"check/{sample}")
                except TemplateError as err:
                    problems.append(f"{t_where}: {err}")
                    break
                if (problem := item_problem(item, kc.id)) is not None:
                    problems.append(f"{t_where}: a drawn item {problem}")
                    break
    valid_ids = [placed.kc.id for placed in kcs]
    cycle = find_cycle({placed.kc.id: [p for p in placed.kc.prerequisites if p in valid_ids]
                        for placed in kcs})
    if cycle:
        problems.append("knowledge_components: prerequisites form a cycle: "
                        + " -> ".join(cycle))
    return problems


def read_curriculum(path: Path) -> tuple[CurriculumSpec, str]:
    """Read and validate a ``.yaml``/``.yml``/``.json`` curriculum file.

    Returns:
        The curriculum and the SHA-256 of the file's bytes.

    Raises:
        CurriculumError: the file is missing, unparsable or invalid (every problem listed).
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CurriculumError(str(path), [f"cannot read the file: {err.strerror}"]) from None
    try:
        text = decode_utf8(raw, "the file")
    except NotUtf8Error as err:
        raise CurriculumError(str(path), [str(err)]) from None
    try:
        data = (json.loads(text) if path.suffix.lower() == ".json"
                else yaml.safe_load(text))
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise CurriculumError(str(path), [f"not valid {path.suffix.lstrip('.').upper() or 'YAML'}"
                                          f": {err}".replace("\n", " ")]) from None
    return parse_curriculum(data, str(path)), hashlib.sha256(raw).hexdigest()


def import_curriculum_file(db: LearningDatabase, path: Path
                           ) -> tuple[CurriculumSpec, dict[str, int]]:
    """Read and validate the curriculum file at ``path``, then import it into ``db``
    in one transaction (see :func:`read_curriculum`, :func:`import_curriculum`).

    Returns:
        The curriculum and the counts of :func:`import_curriculum`.

    Raises:
        CurriculumError: the file is missing, unparsable or invalid; nothing is written.
    """
    spec, sha256 = read_curriculum(path)
    with db.session() as session:
        counts = import_curriculum(session, spec, sha256)
    return spec, counts


def import_curriculum(session: Session, spec: CurriculumSpec, sha256: str) -> dict[str, int]:
    """Write a validated curriculum in the caller's transaction (upsert by ID: a
    re-import updates KCs and authored items; generated items and student data stay).

    Returns:
        Counts: ``knowledge_components``, ``prerequisites``, ``items``.
    """
    now = utcnow()
    curriculum = session.get(Curriculum, spec.id)
    if curriculum is None:
        session.add(Curriculum(id=spec.id, title=spec.title, source_sha256=sha256,
                               imported_at=now))
    else:
        curriculum.title, curriculum.source_sha256, curriculum.imported_at = (
            spec.title, sha256, now)
    session.flush()
    for position, kc in enumerate(spec.knowledge_components):
        bkt = kc.bkt or spec.bkt_defaults
        row = session.get(KnowledgeComponent, (spec.id, kc.id)) or KnowledgeComponent(
            curriculum_id=spec.id, id=kc.id)
        row.position, row.name, row.description = position, kc.name, kc.description
        row.p_prior, row.p_learn, row.p_guess, row.p_slip = (
            bkt.prior, bkt.learn, bkt.guess, bkt.slip)
        row.hint, row.worked_example = kc.hint, kc.worked_example
        row.misconceptions = [m.model_dump() for m in kc.misconceptions]
        row.item_templates = [t.model_dump(mode="json") for t in kc.templates]
        session.add(row)
    session.flush()
    for old in session.scalars(select(KcPrerequisite).where(
            KcPrerequisite.curriculum_id == spec.id)):
        session.delete(old)
    session.flush()
    prerequisites = 0
    for kc in spec.knowledge_components:
        for pre in kc.prerequisites:
            session.add(KcPrerequisite(curriculum_id=spec.id, kc_id=kc.id, prerequisite_id=pre))
            prerequisites += 1
    items = 0
    for kc in spec.knowledge_components:
        for item in kc.items:
            row = session.get(Item, (spec.id, item.id)) or Item(
                curriculum_id=spec.id, id=item.id, created_at=now)
            row.kc_id, row.prompt, row.answer_type = kc.id, item.prompt, item.answer_type.value
            row.answer_key, row.choices, row.tolerance = item.answer, item.choices, item.tolerance
            row.difficulty, row.misconceptions = item.difficulty, item.misconceptions
            row.alternatives = list(item.alternatives)
            row.origin, row.created_by = "authored", "import"
            session.add(row)
            items += 1
    return {"knowledge_components": len(spec.knowledge_components),
            "prerequisites": prerequisites, "items": items}
