"""Reviews on the real database: reviewers racing on one detection leave one review, the last write's."""

from __future__ import annotations

from sqlalchemy import select

from cluster import reviews
from cluster.accounts import create_organization
from cluster.db import init_schema, open_session, session_scope
from cluster.review_tables import DetectionReview
from cluster.tables import InferenceFile
from tests.factories import inference_rows, race


def test_racing_reviews_of_one_detection_leave_one_review(private_database_url):
    url = private_database_url
    init_schema(url)
    with session_scope(url) as s:
        org = create_organization(s, "reviews").id
    detection = {"id": "d0", "artifact_type": "glitch", "start_ms": 100, "end_ms": 200, "confidence": 0.9}
    _, (file_id,) = inference_rows(url, org, [{"status": "completed", "duration_ms": 1000, "detections": [detection]}], job_status="completed")
    actions = iter(["accept", "reject", "accept", "reject", "accept", "reject"])

    def review() -> str:
        action = next(actions)
        with session_scope(url) as s:
            f = s.get(InferenceFile, file_id)
            return reviews.record(s, f, "d0", action, reviews.review_values(f, ["glitch"], "d0", action, None, None, None), None, "k").id

    ids = race(review, n=6)
    with open_session(url) as s:
        rows = list(s.scalars(select(DetectionReview).where(DetectionReview.inference_file_id == file_id)))
    assert len(ids) == 6  # every reviewer succeeded (a thread that raised adds nothing)
    assert len(rows) == 1 and set(ids) == {rows[0].id} and rows[0].action in ("accept", "reject")
