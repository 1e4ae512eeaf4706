"""v3 custom speech-to-text shapes (stt-custom-models-*.md plus the contract's additions)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.augmentation import Augmentation
from schemas.common import LogEntry, ORMModel, Text, UTCTimestamp


class TrainingStatus(IntEnum):
    NOT_RUNNING = 1  # created, no training data
    READY = 2  # training data uploaded
    RUNNING = 3
    SUCCESS = 4  # ready for transcription
    FAILED = 5


STATUS_MESSAGES = {
    TrainingStatus.NOT_RUNNING: "Not running: upload training data to continue",
    TrainingStatus.READY: "Ready to run",
    TrainingStatus.RUNNING: "Training started successfully",
    TrainingStatus.SUCCESS: "Training completed successfully",
    TrainingStatus.FAILED: "Training failed",
}
TRAINABLE = (TrainingStatus.READY, TrainingStatus.SUCCESS, TrainingStatus.FAILED)  # POST /run accepts these
COUNTED_BY_LIMIT = (TrainingStatus.RUNNING, TrainingStatus.SUCCESS)  # models a plan limit counts

BaseModelName = Literal["general", "medical", "legal", "technical"]
BASE_MODELS: tuple[str, ...] = get_args(BaseModelName)
Language = Literal["en"]
LANGUAGE_IDS = {1: "en"}  # base_language_id -> base_language_key
LANGUAGES = {key: lang_id for lang_id, key in LANGUAGE_IDS.items()}
DataType = Literal["train", "test"]
SortField = Literal["id", "name", "created_at", "updated_at", "last_modified", "training_status", "base_model"]
MODEL_KEY_PREFIX = "custom_model_"


def model_key(model_id: int) -> str:
    return f"{MODEL_KEY_PREFIX}{model_id}"


def _check_language_id(language_id: int | None) -> None:
    if language_id is not None and language_id not in LANGUAGE_IDS:
        raise ValueError(f"language_id {language_id} is not supported; supported: {LANGUAGE_IDS}")


class CustomModelCreate(BaseModel):
    """Either page's shape: ``{name, language_id, organization_id?}`` or ``{name, language, base_model?, description?}``."""

    name: Text = Field(min_length=1, max_length=200)
    language: Language | None = Field(None, description="Language key; or give language_id.")
    language_id: int | None = Field(None, description=f"Base language id {LANGUAGE_IDS}; or give language.")
    organization_id: int | None = Field(None, description="Must be the calling key's organization when given.")
    base_model: BaseModelName = "general"
    description: Text | None = Field(None, max_length=10_000)

    @model_validator(mode="after")
    def _one_language(self) -> CustomModelCreate:
        _check_language_id(self.language_id)
        if self.language is None and self.language_id is None:
            raise ValueError(f"give language (one of {list(LANGUAGES)}) or language_id (one of {list(LANGUAGE_IDS)})")
        if self.language is not None and self.language_id is not None and LANGUAGES[self.language] != self.language_id:
            raise ValueError(f"language {self.language!r} and language_id {self.language_id} disagree")
        return self

    @property
    def language_key(self) -> str:
        return self.language or LANGUAGE_IDS[self.language_id]


class CustomModelUpdate(BaseModel):
    """Fields given are changed; omitted ones stay. ``UpdateModelBody`` of the pages fits here."""

    name: Text | None = Field(None, min_length=1, max_length=200)
    description: Text | None = Field(None, max_length=10_000)
    language: Language | None = None
    language_id: int | None = None
    organization_id: int | None = Field(None, description="Must be the calling key's organization when given.")
    base_model: BaseModelName | None = Field(None, description="Applies to the next training run.")

    @model_validator(mode="after")
    def _known_language(self) -> CustomModelUpdate:
        _check_language_id(self.language_id)
        if self.language is not None and self.language_id is not None and LANGUAGES[self.language] != self.language_id:
            raise ValueError(f"language {self.language!r} and language_id {self.language_id} disagree")
        return self


class RunTraining(BaseModel):
    """The documented empty body ``{}`` (it may also be omitted), plus this run's optional augmentation."""

    model_config = ConfigDict(extra="ignore")

    augmentation: Augmentation = Field(
        default_factory=Augmentation,
        description="Perturbations drawn afresh for every training utterance in every epoch; "
        'on by default, {"enabled": false} trains on the clean audio.',
    )


class TrainingLogRef(BaseModel):
    language_id: int
    training_status: int
    log_name: None = None


class CustomModelPublic(BaseModel):
    """The model object. ``training_progress`` appears in status 3, ``training_metrics`` in 4, ``error`` in 5."""

    id: int
    key: str = Field(description="custom_model_{id}: the value of `model` in POST /api/v3/stt.")
    model_key: str
    name: str
    description: str | None
    language: str
    base_model: str
    base_language_id: int
    base_language_key: str
    organization_id: int
    language_data: None = None
    is_trainable: bool = True
    type: int = 1
    last_modified: UTCTimestamp
    created_at: UTCTimestamp
    updated_at: UTCTimestamp
    training_status: int = Field(description="1 not running, 2 ready to run, 3 running, 4 success, 5 failed.")
    status_message: str
    training_progress: float | None = Field(None, description="0-100; only while training_status is 3.")
    started_training_at: UTCTimestamp | None
    finished_training_at: UTCTimestamp | None
    failed_at: UTCTimestamp | None
    error: str | None = Field(None, description="Only when training_status is 5.")
    training_log: TrainingLogRef
    training_metrics: dict[str, Any] | None = Field(
        None, description="word_error_rate, character_error_rate, accuracy_improvement, training_hours, ... (status 4)."
    )

    @classmethod
    def from_record(cls, model: Any, organization_number: int) -> CustomModelPublic:
        """From a ``cluster.stt_tables.CustomModel`` row; status-specific fields are set only in their
        status, so answers serialized with ``exclude_unset`` omit them elsewhere (absent, not null)."""
        language_id = LANGUAGES[model.language]
        fields: dict[str, Any] = {
            "id": model.id,
            "key": model_key(model.id),
            "model_key": model_key(model.id),
            "name": model.name,
            "description": model.description,
            "language": model.language,
            "base_model": model.base_model,
            "base_language_id": language_id,
            "base_language_key": model.language,
            "organization_id": organization_number,
            "language_data": None,
            "is_trainable": True,
            "type": 1,
            "last_modified": model.updated_at,
            "created_at": model.created_at,
            "updated_at": model.updated_at,
            "training_status": model.training_status,
            "status_message": model.status_message,
            "started_training_at": model.started_training_at,
            "finished_training_at": model.finished_training_at,
            "failed_at": model.failed_at,
            "training_log": {"language_id": language_id, "training_status": model.training_status, "log_name": None},
        }
        if model.training_status == TrainingStatus.RUNNING:
            fields["training_progress"] = model.training_progress
        elif model.training_status == TrainingStatus.SUCCESS:
            fields["training_metrics"] = model.training_metrics or {}
        elif model.training_status == TrainingStatus.FAILED:
            fields["error"] = model.error
        return cls(**fields)


class CustomModelList(BaseModel):
    count: int = Field(description="Models in this page.")
    total_results: int = Field(description="Models matching the query.")
    result: list[CustomModelPublic]


class Deleted(BaseModel):
    message: str
    id: int


class DataUploaded(BaseModel):
    message: str
    data_type: DataType
    filename: str
    transcript_filename: str
    training_status: int
    id: int = Field(description="Id of the pair (DELETE .../data/{id}).")
    duration_seconds: float


class DataPairPublic(ORMModel):
    id: int
    type: DataType
    filename: str
    transcript_filename: str
    duration_seconds: float
    created_at: UTCTimestamp


class DataPairList(BaseModel):
    count: int
    total_results: int
    result: list[DataPairPublic]


class DataAudioUrl(BaseModel):
    """A short-lived URL of one pair's audio (it answers Range requests), with the pair's transcript as uploaded."""

    id: int
    type: DataType
    filename: str
    url: str
    expires_in: int
    transcript: str


class DataDeleted(Deleted):
    training_status: int


class TrainingLogPage(BaseModel):
    model_id: int
    log_entries: list[LogEntry]
    total_entries: int


class Word(BaseModel):
    word: str
    start: float = Field(description="Seconds from the start of the audio.")
    end: float
    confidence: float = Field(ge=0, le=1)


class Transcription(BaseModel):
    text: str
    words: list[Word]
    duration: float = Field(description="Seconds of audio.")
    model: str
    language: str
