"""Evaluations: 2-8 models of one kind scored on the same files, with per-file rows and paired comparisons.

Fathom's own v1 endpoints (v1 error shape, both auth headers). References and files are
resolved when the evaluation is created, so it scores exactly the versions and files named
then; the Dispatcher runs it on the serving deployments (``serve_app.evaluator``). Reads
demand detection:read, creation detection:write; an STT evaluation also needs the
custom_models scope of the same kind.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cluster import registry
from cluster.accounts import Principal
from cluster.evaluation_tables import Evaluation, EvaluationFile
from cluster.inference import model_refusal
from cluster.registry import RegistryError
from cluster.stt_tables import CustomModel, TrainingDataPair
from cluster.tables import Annotation, AnnotationSet, AudioFile, Dataset, DetectorModel
from schemas.auth import CUSTOM_MODELS_READ, CUSTOM_MODELS_WRITE, DETECTION_READ, DETECTION_WRITE
from schemas.common import Id, Text
from schemas.evaluations import (
    MAX_FILES,
    EvaluatedModel,
    EvaluationCreate,
    EvaluationData,
    EvaluationFileList,
    EvaluationFilePublic,
    EvaluationList,
    EvaluationPublic,
    EvaluationResults,
)
from schemas.stt import BASE_MODELS
from serve_app.deps import PageDep, SessionDep, WakeDispatcherDep, check_scope, require
from serve_app.errors import V1_ROUTE_ERRORS, ApiError, v1_errors
from serve_app.routes.stt import resolve_model

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"], responses=v1_errors(*V1_ROUTE_ERRORS))

Reader = Annotated[Principal, Depends(require(DETECTION_READ))]
Writer = Annotated[Principal, Depends(require(DETECTION_WRITE))]
EvaluationPath = Annotated[Id, Path()]
SORTS = {"filename": EvaluationFile.filename, "score": EvaluationFile.score, "errors": EvaluationFile.errors}


# --- resolving what an evaluation scores ---------------------------------------------------------


def _detector_model(session: Session, principal: Principal, reference: str) -> dict[str, Any]:
    """A v1 UUID, name@3 / name@alias, or a bare registered name (its production alias, else its latest version)."""
    org = principal.organization_id
    try:
        model_id, label = registry.resolve_detector(session, org, reference)
    except RegistryError:
        raise ApiError(404, f"Model {reference!r} not found", details={"model": reference}) from None
    row = session.get(DetectorModel, model_id)
    if row is None or row.organization_id != org:
        raise ApiError(404, f"Model {reference!r} not found", details={"model": reference})
    refusal = model_refusal(row)
    if refusal:
        raise ApiError(409, f"{reference}: {refusal}", details={"model": reference})
    return {"reference": reference, "label": label or model_id, "model_id": model_id, "target": model_id, "artifact_types": list(row.artifact_types)}


def _stt_model(session: Session, principal: Principal, reference: str) -> dict[str, Any]:
    """A base model, ``custom_model_{id}`` (production alias, else latest), ``custom_model_{id}@3`` / ``@alias``."""
    if reference not in BASE_MODELS:
        check_scope(principal, CUSTOM_MODELS_READ)
    target, label = resolve_model(session, principal, reference, None)
    return {"reference": reference, "label": label, "model_id": None, "target": target}


def _owned_set(session: Session, principal: Principal, data: EvaluationData) -> tuple[Dataset, AnnotationSet]:
    org = principal.organization_id
    dataset = session.get(Dataset, data.dataset_id)
    if dataset is None or dataset.organization_id != org:
        raise ApiError(404, "Dataset not found")
    aset = session.get(AnnotationSet, data.annotation_set_id)
    if aset is None or aset.organization_id != org or aset.dataset_id != dataset.id:
        raise ApiError(404, "Annotation set not found")
    return dataset, aset


def check_data_owned(session: Session, principal: Principal, data: EvaluationData) -> None:
    """404 unless every id in ``data`` is the organization's (what a promotion gate names)."""
    if data.kind == "detector":
        dataset, _ = _owned_set(session, principal, data)
        if data.audio_ids:
            found = set(session.scalars(select(AudioFile.id).where(AudioFile.dataset_id == dataset.id, AudioFile.id.in_(set(data.audio_ids)))))
            if found != set(data.audio_ids):
                raise ApiError(404, "Audio files not found in this dataset")
        return
    query = select(func.count()).select_from(CustomModel).where(CustomModel.organization_id == principal.organization_id)
    if data.custom_model_id is not None:
        if not session.scalar(query.where(CustomModel.id == data.custom_model_id)):
            raise ApiError(404, f"Custom model {data.custom_model_id} not found")
        return
    pairs = set(data.pair_ids)
    found = session.scalar(
        select(func.count()).select_from(TrainingDataPair).join(CustomModel, CustomModel.id == TrainingDataPair.model_id)
        .where(CustomModel.organization_id == principal.organization_id, TrainingDataPair.id.in_(pairs))
    )
    if found != len(pairs):
        raise ApiError(404, "Data pairs not found")


def _detector_items(session: Session, principal: Principal, data: EvaluationData) -> list[dict[str, Any]]:
    dataset, aset = _owned_set(session, principal, data)
    query = select(AudioFile).where(AudioFile.dataset_id == dataset.id)
    if data.audio_ids is not None:
        query = query.where(AudioFile.id.in_(set(data.audio_ids)))
    audio = list(session.scalars(query.order_by(AudioFile.created_at, AudioFile.id)))
    if data.audio_ids is not None:
        missing = sorted(set(data.audio_ids) - {a.id for a in audio})
        if missing:
            raise ApiError(404, f"{len(missing)} audio files are not in this dataset", details={"audio_ids": missing[:20]})
    if aset.status != "published":
        raise ApiError(409, "Annotation set must be published before it is evaluated against")
    not_ready = [a.id for a in audio if a.processing_status != "ready"]
    if not_ready:
        raise ApiError(409, f"{len(not_ready)} audio files are not ready", details={"audio_ids": not_ready[:20]})
    if not audio:
        raise ApiError(409, "Dataset has no ready audio files")
    if len(audio) > MAX_FILES:
        raise ApiError(400, f"An evaluation scores at most {MAX_FILES} files; give audio_ids", details={"files": len(audio)})
    events: dict[str, list[list[Any]]] = {a.id: [] for a in audio}
    for a_id, t, start, end in session.execute(
        select(Annotation.audio_file_id, Annotation.artifact_type, Annotation.start_ms, Annotation.end_ms)
        .where(Annotation.annotation_set_id == aset.id, Annotation.audio_file_id.in_(events))
        .order_by(Annotation.start_ms)
    ):
        events[a_id].append([t, int(start), int(end)])
    return [
        {"id": a.id, "filename": a.original_filename, "audio_key": a.blob_key, "duration_ms": int(a.duration_ms or 0), "events": events[a.id]}
        for a in audio
    ]


def _stt_items(session: Session, principal: Principal, data: EvaluationData) -> list[dict[str, Any]]:
    check_scope(principal, CUSTOM_MODELS_READ)
    query = (
        select(TrainingDataPair)
        .join(CustomModel, CustomModel.id == TrainingDataPair.model_id)
        .where(CustomModel.organization_id == principal.organization_id)
    )
    if data.custom_model_id is not None:
        model = session.scalar(
            select(CustomModel).where(CustomModel.id == data.custom_model_id, CustomModel.organization_id == principal.organization_id)
        )
        if model is None:
            raise ApiError(404, f"Custom model {data.custom_model_id} not found")
        query = query.where(TrainingDataPair.model_id == model.id, TrainingDataPair.type == "test")
    else:
        query = query.where(TrainingDataPair.id.in_(set(data.pair_ids)))
    pairs = list(session.scalars(query.order_by(TrainingDataPair.id)))
    if data.pair_ids is not None:
        missing = sorted(set(data.pair_ids) - {p.id for p in pairs})
        if missing:
            raise ApiError(404, f"{len(missing)} data pairs not found", details={"pair_ids": missing[:20]})
    if not pairs:
        raise ApiError(409, f"Custom model {data.custom_model_id} has no test pairs; upload some with type=test")
    if len(pairs) > MAX_FILES:
        raise ApiError(400, f"An evaluation scores at most {MAX_FILES} files; give pair_ids", details={"files": len(pairs)})
    return [{"id": str(p.id), "filename": p.filename, "audio_key": p.audio_key, "reference": p.transcript} for p in pairs]


# --- answers -----------------------------------------------------------------------------------


def evaluation_answer(row: Evaluation) -> EvaluationPublic:
    return EvaluationPublic(
        id=row.id,
        kind=row.kind,
        status=row.status,
        progress=round(min(row.progress, 100.0 if row.status == "completed" else 99.9), 1),
        models=[EvaluatedModel(reference=m["reference"], label=m["label"], model_id=m["model_id"]) for m in row.models],
        data=row.data,
        config=row.config,
        total_files=len(row.items),
        error_message=row.error_message,
        results=EvaluationResults.model_validate(row.results) if row.results else None,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _owned(session: Session, principal: Principal, evaluation_id: str) -> Evaluation:
    row = session.get(Evaluation, evaluation_id)
    if row is None or row.organization_id != principal.organization_id:
        raise ApiError(404, "Evaluation not found")
    if row.kind == "stt":
        check_scope(principal, CUSTOM_MODELS_READ)
    return row


@router.post("", status_code=201, response_model=EvaluationPublic, responses=v1_errors(404, 409))
def create_evaluation(
    body: EvaluationCreate, session: SessionDep, principal: Writer, wake_dispatcher: WakeDispatcherDep
) -> EvaluationPublic:
    """Queue an evaluation of 2-8 models of one kind on the same files; it runs on the serving deployments."""
    kind = body.data.kind
    if kind == "stt":
        check_scope(principal, CUSTOM_MODELS_WRITE)
    if len(set(body.models)) != len(body.models):
        raise ApiError(400, "Each model may be named once", details={"models": body.models})
    resolve = _detector_model if kind == "detector" else _stt_model
    models = [resolve(session, principal, ref) for ref in body.models]
    config = body.config.model_dump()
    if kind == "detector":
        items = _detector_items(session, principal, body.data)
        common = [t for t in models[0]["artifact_types"] if all(t in m["artifact_types"] for m in models[1:])]
        types = body.config.artifact_types or common
        unknown = [t for t in types if t not in common]
        if unknown or not types:
            raise ApiError(
                400,
                f"artifact_types {unknown} are not detected by every model" if unknown else "The models detect no artifact type in common",
                details={"common": common},
            )
        config["artifact_types"] = list(dict.fromkeys(types))
    else:
        items = _stt_items(session, principal, body.data)
        config.pop("artifact_types", None)
    row = Evaluation(
        organization_id=principal.organization_id,
        kind=kind,
        models=models,
        data=body.data.canonical(),
        items=items,
        config=config,
        created_by=principal.key_id,
    )
    session.add(row)
    session.commit()
    wake_dispatcher("evaluation")
    return evaluation_answer(row)


@router.get("", response_model=EvaluationList)
def list_evaluations(session: SessionDep, principal: Reader, page: PageDep) -> EvaluationList:
    """The organization's evaluations, newest first (STT ones only for keys with custom_models:read)."""
    query = select(Evaluation).where(Evaluation.organization_id == principal.organization_id)
    if not principal.allows(CUSTOM_MODELS_READ):
        query = query.where(Evaluation.kind == "detector")
    fetched = page.fetch(session, query, Evaluation.created_at.desc(), Evaluation.id)
    return EvaluationList(**{**fetched, "items": [evaluation_answer(r) for r in fetched["items"]]})


@router.get("/{evaluation_id}", response_model=EvaluationPublic, responses=v1_errors(404))
def get_evaluation(evaluation_id: EvaluationPath, session: SessionDep, principal: Reader) -> EvaluationPublic:
    """Status and progress; once completed, every model's summary and every pair's paired bootstrap comparison."""
    return evaluation_answer(_owned(session, principal, evaluation_id))


def _file_answers(session: Session, row: Evaluation, files: list[EvaluationFile]) -> list[EvaluationFilePublic]:
    others = {
        (m, i): s
        for m, i, s in session.execute(
            select(EvaluationFile.model_index, EvaluationFile.item_id, EvaluationFile.score).where(
                EvaluationFile.evaluation_id == row.id, EvaluationFile.item_id.in_({f.item_id for f in files})
            )
        )
    }
    out = []
    for f in files:
        model = row.models[f.model_index]
        differences = {}
        for j, other in enumerate(row.models):
            if j != f.model_index and (j, f.item_id) in others:
                theirs = others[(j, f.item_id)]
                differences[other["reference"]] = round(f.score - theirs, 4) if f.score is not None and theirs is not None else None
        out.append(
            EvaluationFilePublic(
                file_id=f.item_id, filename=f.filename, model=model["reference"], label=model["label"], status=f.status,
                error_message=f.error_message, score=f.score, errors=f.errors, differences=differences, details=f.row,
            )
        )
    return out


def _csv(row: Evaluation, answers: list[EvaluationFilePublic]) -> str:
    """One line per (file, model): the counts a spreadsheet sorts by; alignments stay in the JSON form."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    others = [m["reference"] for m in row.models]
    if row.kind == "detector":
        types = row.config["artifact_types"]
        extra = [f"{t}_{c}" for t in types for c in ("tp", "fp", "fn")]
    else:
        extra = ["reference", "hypothesis", "substitutions", "deletions", "insertions", "reference_words", "character_error_rate"]
    writer.writerow(["file_id", "filename", "model", "label", "status", "error_message", "score", "errors", *extra, *(f"difference_vs_{o}" for o in others)])
    for a in answers:
        d = a.details
        if not d:
            values = [""] * len(extra)
        elif row.kind == "detector":
            values = [d["classes"][t][c] for t in row.config["artifact_types"] for c in ("tp", "fp", "fn")]
        else:
            values = [d["reference"], d["hypothesis"], d["substitutions"], d["deletions"], d["insertions"], d["reference_words"], d["character_error_rate"]]
        diffs = [a.differences.get(o, "") if o != a.model else "" for o in others]
        writer.writerow([a.file_id, a.filename, a.model, a.label, a.status, a.error_message or "", a.score, a.errors, *values, *diffs])
    return buf.getvalue()


@router.get("/{evaluation_id}/files", response_model=EvaluationFileList, responses={**v1_errors(404), 200: {"content": {"text/csv": {}}}})
def list_evaluation_files(
    evaluation_id: EvaluationPath,
    session: SessionDep,
    principal: Reader,
    page: PageDep,
    model: Annotated[Text | None, Query(max_length=300, description="Only this model's rows (its reference as requested, or its label).")] = None,
    sort: Annotated[Literal["filename", "score", "errors"], Query()] = "filename",
    direction: Annotated[Literal["asc", "desc"], Query()] = "asc",
    format: Annotated[Literal["json", "csv"], Query(description="csv: every matching row (not paged) as comma-separated values.")] = "json",
) -> Any:
    """A row per file and model: detectors' TP/FP/FN per class with every false positive and missed event,
    STT's reference, hypothesis and word alignment; each with its differences to the other models."""
    row = _owned(session, principal, evaluation_id)
    query = select(EvaluationFile).where(EvaluationFile.evaluation_id == row.id)
    if model is not None:
        indexes = [i for i, m in enumerate(row.models) if model in (m["reference"], m["label"])]
        if not indexes:
            raise ApiError(404, f"Model {model!r} is not part of this evaluation", details={"models": [m["reference"] for m in row.models]})
        query = query.where(EvaluationFile.model_index.in_(indexes))
    column = SORTS[sort]
    order = (column.desc() if direction == "desc" else column.asc(), EvaluationFile.filename, EvaluationFile.model_index, EvaluationFile.id)
    if format == "csv":  # every matching row, in the requested order: a spreadsheet is not paged
        answers = _file_answers(session, row, list(session.scalars(query.order_by(*order))))
        return Response(
            _csv(row, answers), media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="evaluation-{row.id}.csv"'},
        )
    fetched = page.fetch(session, query, *order)
    answers = _file_answers(session, row, fetched["items"])
    return EvaluationFileList(items=answers, total=fetched["total"], page=fetched["page"], page_size=fetched["page_size"])
