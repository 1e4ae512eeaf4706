"""Reviews of an inference file's detections (Fathom's own v1 addition): accept, reject or correct each one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from schemas.common import ORMModel, Page, Text, UTCTimestamp
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
