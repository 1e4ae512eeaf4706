"""Reviews of an inference file's detections (Fathom's own v1 addition): accept, reject or correct each one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from schemas.common import Id, ORMModel, Page, Text, UTCTimestamp
from schemas.datasets import MAX_SPAN_MS

ReviewAction = Literal["accept", "reject", "correct"]


class ReviewCreate(BaseModel):
    detection_id: Text = Field(min_length=1, max_length=20, description="The detection's `id` in the file's detections.")
    action: ReviewAction
    artifact_type: Text | None = Field(None, min_length=1, max_length=100, description="correct only: the right type.")
    start_ms: int | None = Field(None, ge=0, le=MAX_SPAN_MS, description="correct only: the right start.")
    end_ms: int | None = Field(None, gt=0, le=MAX_SPAN_MS, description="correct only: the right end.")
    note: Text | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _corrections(self) -> "ReviewCreate":
        changed = [self.artifact_type, self.start_ms, self.end_ms]
        if self.action == "correct" and all(v is None for v in changed):
            raise ValueError("a correction names the right artifact_type, start_ms or end_ms")
        if self.action != "correct" and any(v is not None for v in changed):
            raise ValueError(f"{self.action} takes no artifact_type, start_ms or end_ms (use action correct)")
        return self


class ReviewPublic(ORMModel):
    id: str
    detection_id: str
    action: ReviewAction
    artifact_type: str | None = Field(description="correct: the corrected type (else the detection's own).")
    start_ms: int | None
    end_ms: int | None
    note: str | None
    reviewed_by: str | None = Field(description="The id of the API key that reviewed it.")
    reviewed_at: UTCTimestamp


class ReviewList(Page[ReviewPublic]):
    detections: int = Field(description="Detections in the file.")
    reviewed: int = Field(description="Detections with a review.")


class SendToDataset(BaseModel):
    dataset_id: Id = Field(description="The dataset that receives the file as audio.")
    annotation_set_id: Id | None = Field(
        None, description="A draft set of that dataset for the annotations; omitted: a new draft set is started."
    )


class SentToDataset(BaseModel):
    """What sending a reviewed file made: the dataset's copy of the audio and the draft set's new annotations."""

    dataset_id: str
    audio_id: str = Field(description="The new dataset audio (a copy of the file's blob, queued for processing).")
    annotation_set_id: str
    annotation_set_version: int
    annotations_created: int = Field(description="One per accepted or corrected detection, with the corrected type and bounds.")
    reviewed_negatives: int = Field(description="Rejected detections, recorded in the annotations' extra_data.")
