"""What readers of the datasets ask the catalog: a readable version, a run named by its
version label, and the metadata tables as plain rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, Text, cast, func, select
from sqlalchemy.orm import Session

from hypermetric.catalog.db import Database
from hypermetric.catalog.models import DatasetVersion, Evaluation, Run
from hypermetric.catalog.records import RunRecord, VersionRecord
from hypermetric.catalog.runs import list_runs, run_record
from hypermetric.catalog.shards import version_record
from hypermetric.catalog.types import UTCDateTime
from hypermetric.errors import NotFoundError
from hypermetric.masking import masker

__all__ = [
    "METADATA_TABLES",
    "MetadataColumn",
    "MetadataTable",
    "latest_run_with_version",
    "metadata_columns",
    "metadata_table",
    "readable_version",
    "runs_in",
]

#: the metadata tables a query connection shows beside the datasets
METADATA_TABLES = ("runs", "evaluations", "dataset_versions")


@dataclass(frozen=True)
class MetadataColumn:
    """A column of a metadata table: its name and its portable kind.

    ``kind`` is one of ``int``, ``float``, ``str``, ``bool``, ``datetime`` (aware UTC) and
    ``json`` (JSON text, as the DB holds it: read without decoding it).
    """

    name: str
    kind: str


@dataclass(frozen=True)
class MetadataTable:
    """A metadata table's columns and rows (tuples in column order)."""

    name: str
    columns: tuple[MetadataColumn, ...]
    rows: list[tuple[Any, ...]]


def readable_version(db: Database, version_id: int) -> VersionRecord:
    """The dataset version ``version_id``, if it exists and has not been expired."""
    with db.session() as session:
        row = session.get(DatasetVersion, version_id)
        newest = session.scalar(select(DatasetVersion.id).order_by(DatasetVersion.id.desc()))
        if row is None:
            hint = f"the newest is {newest}" if newest else "nothing has been committed yet"
            raise NotFoundError(
                f"no dataset version {version_id}; {hint} (`hypermetric versions` lists them)"
            )
        if row.expired:
            raise NotFoundError(
                f"dataset version {version_id} was expired by `hypermetric clean` and can no "
                f"longer be read; read a later version (the newest is {newest}) or drop --as-of"
            )
        return version_record(row)


def latest_run_with_version(db: Database, evaluation: str, version_label: str) -> RunRecord:
    """The newest successful run of ``evaluation`` whose version label is ``version_label``.

    Newest means the latest logical date (then the highest id).
    """
    stmt = (
        select(Run, Evaluation.name)
        .join(Evaluation, Run.evaluation_id == Evaluation.id)
        .where(
            Evaluation.name == evaluation,
            Run.version_label == version_label,
            Run.state == "success",
        )
        .order_by(Run.logical_date.desc(), Run.id.desc())
        .limit(1)
    )
    with db.session() as session:
        found = session.execute(stmt).first()
    if found is None:
        raise NotFoundError(
            f"no successful run of evaluation {evaluation!r} with version {version_label!r}; "
            f"`hypermetric runs list -e {evaluation}` shows its runs"
        )
    return run_record(found[0], found[1])


def successful_runs(db: Database, evaluation: str) -> list[RunRecord]:
    """The successful runs of ``evaluation``, oldest first (by logical date, then id): the
    series history, power and the web view read."""
    runs = list_runs(db, evaluation=evaluation, state="success", limit=None)
    return sorted(runs, key=lambda r: (r.logical_date, r.id))


def runs_in(db: Database, run_ids: Sequence[int]) -> dict[int, RunRecord]:
    """The runs with these ids (missing ids are left out)."""
    out: dict[int, RunRecord] = {}
    with db.session() as session:
        for start in range(0, len(run_ids), 500):
            stmt = (
                select(Run, Evaluation.name)
                .join(Evaluation, Run.evaluation_id == Evaluation.id)
                .where(Run.id.in_(list(run_ids[start : start + 500])))
            )
            for row, name in session.execute(stmt):
                out[row.id] = run_record(row, name)
    return out


def _kind(column_type: Any) -> str:
    if isinstance(column_type, UTCDateTime):
        return "datetime"
    if isinstance(column_type, JSON):
        return "json"
    if isinstance(column_type, Boolean):
        return "bool"
    if isinstance(column_type, Integer):
        return "int"
    if isinstance(column_type, Float):
        return "float"
    return "str"


def _columns(model: Any) -> list[MetadataColumn]:
    return [MetadataColumn(c.key, _kind(c.type)) for c in model.__table__.columns]


def _rows(session: Session, model: Any, extra: list[Any]) -> list[tuple[Any, ...]]:
    columns = [
        func.nullif(cast(c, Text), "null").label(c.key) if _kind(c.type) == "json" else c
        for c in model.__table__.columns
    ]
    stmt = select(*columns, *extra)
    if model is Run:
        stmt = stmt.join(Evaluation, Run.evaluation_id == Evaluation.id)
    return [tuple(r) for r in session.execute(stmt.order_by(model.__table__.c.id))]


#: columns a user may have put a credential in (a dataset URI, a param, an error quoting
#: either): the views show them masked (the DB keeps them, a resume needs them)
_MASKED = {"runs": ("dataset", "params", "error"), "evaluations": ("params", "import_path")}


def _mask_columns(
    columns: list[MetadataColumn], rows: list[tuple[Any, ...]], names: Sequence[str]
) -> list[tuple[Any, ...]]:
    where = [i for i, c in enumerate(columns) if c.name in names]
    if not where:
        return rows
    mask = masker()
    out = []
    for row in rows:
        values = list(row)
        for i in where:
            if isinstance(values[i], str):
                values[i] = mask(values[i])
        out.append(tuple(values))
    return out


def _model(name: str) -> Any:
    models = {"runs": Run, "evaluations": Evaluation, "dataset_versions": DatasetVersion}
    if name not in models:
        raise ValueError(f"unknown metadata table {name!r}; expected one of {METADATA_TABLES}")
    return models[name]


def metadata_columns(name: str) -> tuple[MetadataColumn, ...]:
    """The columns of the metadata table ``name``, without reading the DB."""
    model = _model(name)
    columns = _columns(model)
    if model is Run:
        columns.insert(2, MetadataColumn("evaluation", "str"))
    return tuple(columns)


def metadata_table(db: Database, name: str) -> MetadataTable:
    """The rows of the metadata table ``name`` (one of :data:`METADATA_TABLES`).

    ``runs`` gets its evaluation's name as an extra ``evaluation`` column.
    """
    model = _model(name)
    columns = list(metadata_columns(name))
    extra: list[Any] = [Evaluation.name] if model is Run else []
    with db.session() as session:
        rows = _rows(session, model, extra)
    if model is Run:
        rows = [(*r[:2], r[-1], *r[2:-1]) for r in rows]
    rows = _mask_columns(columns, rows, _MASKED.get(name, ()))
    return MetadataTable(name=name, columns=tuple(columns), rows=rows)
