"""Evaluations (Fathom's own v1 endpoints): several models of one kind scored on the same files."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.common import Id, ORMModel, Page, Text, UTCTimestamp
from schemas.inference import InferenceConfig
from schemas.registry import ModelKind

MAX_MODELS = 8
MAX_FILES = 5000  # files per evaluation (each scored by every model)
MAX_KEYTERMS = 500

# A v1 model UUID, a registered name (its production alias, else its latest version), name@3,
# name@alias; for STT also a base model (general, medical, ...) and custom_model_{id}[@...].
EvaluationReference = Annotated[
    str,
    Field(min_length=1, max_length=300, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}(@([0-9]{1,10}|[A-Za-z0-9][A-Za-z0-9_-]{0,63}))?$"),
]


class EvaluationData(BaseModel):
    """The files: a dataset's published annotation set (``dataset_id`` + ``annotation_set_id``, optionally
    ``audio_ids``) for detectors; a custom model's test pairs (``custom_model_id``) or chosen ``pair_ids`` for STT."""

    model_config = ConfigDict(extra="forbid")
    dataset_id: Id | None = None
    annotation_set_id: Id | None = None
    audio_ids: list[Id] | None = Field(None, min_length=1, max_length=MAX_FILES)
    custom_model_id: int | None = Field(None, ge=1, le=2**63 - 1)
    pair_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(None, min_length=1, max_length=MAX_FILES)

    @property
    def kind(self) -> str:
        return "detector" if self.dataset_id is not None else "stt"

    def canonical(self) -> dict[str, Any]:
        """As stored, and as promotion gates compare it: ids sorted and unique, nothing unset."""
        out = self.model_dump(exclude_none=True)
        for key in ("audio_ids", "pair_ids"):
            if key in out:
                out[key] = sorted(set(out[key]))
        return out

    @model_validator(mode="after")
    def _one_form(self) -> EvaluationData:
        detector = (self.dataset_id, self.annotation_set_id, self.audio_ids)
        if any(v is not None for v in detector):
            if self.dataset_id is None or self.annotation_set_id is None:
                raise ValueError("detector data needs dataset_id and annotation_set_id")
            if self.custom_model_id is not None or self.pair_ids is not None:
                raise ValueError("give detector data (dataset_id, annotation_set_id) or STT data (custom_model_id or pair_ids), not both")
        elif (self.custom_model_id is None) == (self.pair_ids is None):
            raise ValueError("give dataset_id + annotation_set_id, or exactly one of custom_model_id (its test pairs) and pair_ids")
        return self


class EvaluationConfig(BaseModel):
    """Detectors: the inference config and the event matcher's collars; STT: boost terms and keyterms."""

    model_config = ConfigDict(extra="forbid")
    inference: InferenceConfig = Field(default_factory=InferenceConfig, description="Detectors: how detections are made (the API's defaults).")
    collar_ms: int = Field(200, ge=0, le=10_000, description="Detectors: onset collar, and the least offset collar, in ms.")
    offset_share: float = Field(0.5, ge=0.0, le=1.0, description="Detectors: the offset collar as a share of the reference event's length, when larger.")
    artifact_types: list[Annotated[Text, Field(min_length=1, max_length=100)]] | None = Field(
        None, max_length=100, description="Detectors: the classes to score (default: those every model detects)."
    )
    boost_terms: list[Annotated[Text, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=MAX_KEYTERMS, description="STT: passed to every transcription, and scored as keyterms."
    )
    keyterms: list[Annotated[Text, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=MAX_KEYTERMS, description="STT: terms whose recall and false insertions are counted (besides boost_terms)."
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of the paired bootstrap.")


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[EvaluationReference] = Field(min_length=2, max_length=MAX_MODELS, description="2-8 references of one kind.")
    data: EvaluationData
    config: EvaluationConfig = Field(default_factory=EvaluationConfig)


class EvaluatedModel(BaseModel):
    reference: str = Field(description="As requested.")
    label: str = Field(description="What it resolved to: name@version, a v1 model UUID, or a base model name.")
    model_id: str | None = Field(description="Detectors: the v1 model UUID.")


class Comparison(BaseModel):
    a: str
    b: str
    metric: Literal["f1_score", "word_error_rate"]
    difference: float | None = Field(description="metric(b) - metric(a) over the files both scored.")
    ci_low: float | None = Field(description="Paired bootstrap 95% interval over files.")
    ci_high: float | None
    resamples: int
    files: int


class ModelResult(BaseModel):
    reference: str
    label: str
    failed_files: int
    summary: dict[str, Any] | None = Field(
        description="Detectors: overall and per-class event-based figures, segment_based, threshold_sweep, best_threshold; "
        "STT: word_error_rate, character_error_rate, sentence_error_rate, edit counts, keyterms."
    )


class EvaluationResults(BaseModel):
    metric: Literal["f1_score", "word_error_rate"]
    models: list[ModelResult]
    comparisons: list[Comparison]
    timings: dict[str, float] | None = Field(
        None, description="Seconds of the run that finished it: run_s, predict_s (summed over concurrent calls), score_s, summary_s."
    )


class EvaluationPublic(BaseModel):
    id: str
    kind: ModelKind
    status: Literal["queued", "running", "completed", "failed"]
    progress: float
    models: list[EvaluatedModel]
    data: dict[str, Any]
    config: dict[str, Any]
    total_files: int
    error_message: str | None
    results: EvaluationResults | None
    created_at: UTCTimestamp
    started_at: UTCTimestamp | None
    finished_at: UTCTimestamp | None


class EvaluationList(Page[EvaluationPublic]):
    pass


class EvaluationFilePublic(ORMModel):
    file_id: str = Field(description="The dataset audio id, or the data pair id.")
    filename: str
    model: str = Field(description="The model's reference, as requested.")
    label: str
    status: Literal["completed", "failed"]
    error_message: str | None
    score: float | None = Field(description="The file's headline metric: event F1, or WER (%).")
    errors: int = Field(description="False positives plus missed events, or word edits.")
    differences: dict[str, float | None] = Field(description="score minus each other model's score on this file.")
    details: dict[str, Any] = Field(
        description="Detectors: per class tp/fp/fn, false_positives and missed (start_ms/end_ms), segment and sweep counts; "
        "STT: reference, hypothesis, alignment (jiwer), edit counts, word_error_rate, character_error_rate."
    )


class EvaluationFileList(Page[EvaluationFilePublic]):
    pass


class AliasGateSet(BaseModel):
    """A promotion gate: moves of the alias must be evaluated on ``evaluation_data`` and not regress ``metric`` too far."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "evaluation_data": {"dataset_id": "3f2b8c1e-0d4a-4f7e-9b6a-1c2d3e4f5a6b", "annotation_set_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"},
                    "metric": "f1",
                    "max_regression": 0.02,
                }
            ]
        },
    )
    evaluation_data: EvaluationData = Field(description="The evaluation data, exactly as an evaluation names it.")
    metric: Literal["f1", "wer", "cer"] = Field(description="f1 for detectors (0-1); wer or cer (percent) for STT models.")
    max_regression: float = Field(ge=0, le=100, description="How much worse than the current version a new one may score, in the metric's units.")


class AliasGatePublic(BaseModel):
    name: str
    alias: str
    evaluation_data: dict[str, Any]
    metric: Literal["f1", "wer", "cer"]
    max_regression: float
    updated_at: UTCTimestamp
