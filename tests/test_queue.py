"""Durable queue semantics on the real database (SQLite, or PostgreSQL with FATHOM_TEST_DATABASE=postgres)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from cluster import queue
from cluster.accounts import create_organization
from cluster.db import init_schema, session_scope
from cluster.inference import finish_file
from cluster.tables import AudioFile, Dataset, DetectorModel, InferenceFile, InferenceJob, utcnow


@pytest.fixture
def job(private_database_url):
    init_schema(private_database_url)
    with session_scope(private_database_url) as s:
        org = create_organization(s, "queue-org")
        model = DetectorModel(organization_id=org.id, artifact_types=["glitch"], checkpoint_key="k")
        s.add(model)
        s.flush()
        job = InferenceJob(organization_id=org.id, model_id=model.id)
        s.add(job)
        s.flush()
        return org.id, job.id


def add_files(url: str, org_id: str, job_id: str, n: int) -> list[str]:
    ids = []
    with session_scope(url) as s:
        for i in range(n):
            f = InferenceFile(
                organization_id=org_id, inference_job_id=job_id, original_filename=f"{i}.wav", content_type="audio/wav",
                declared_size=10, blob_key=f"inference/{job_id}/{i}", status="queued", queued_at=utcnow() + timedelta(microseconds=i),
            )
            s.add(f)
            s.flush()
            ids.append(f.id)
    return ids


def test_concurrent_claimers_never_share_a_file(private_database_url, job):
    org_id, job_id = job
    ids = add_files(private_database_url, org_id, job_id, 40)
    got: list[list[str]] = [[], [], [], []]

    def claimer(i: int) -> None:
        while True:
            claimed = queue.claim_inference_files(private_database_url, limit=3, lease_s=60, max_attempts=3)
            claimed = [c for c in claimed if c[1] == job_id]
            if not claimed:
                return
            got[i].extend(f for f, _ in claimed)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [f for g in got for f in g]
    assert sorted(flat) == sorted(ids)  # every file claimed exactly once
    assert len(set(flat)) == len(flat)


def test_expired_lease_is_claimed_again_then_fails_after_max_attempts(private_database_url, job):
    org_id, job_id = job
    (fid,) = add_files(private_database_url, org_id, job_id, 1)

    def expire() -> None:
        with session_scope(private_database_url) as s:
            s.execute(update(InferenceFile).where(InferenceFile.id == fid).values(lease_until=utcnow() - timedelta(seconds=1)))

    assert (fid, job_id) in queue.claim_inference_files(private_database_url, limit=100, lease_s=60, max_attempts=2)
    assert fid not in [f for f, _ in queue.claim_inference_files(private_database_url, limit=100, lease_s=60, max_attempts=2)]
    expire()
    assert fid in [f for f, _ in queue.claim_inference_files(private_database_url, limit=100, lease_s=60, max_attempts=2)]
    expire()
    assert fid not in [f for f, _ in queue.claim_inference_files(private_database_url, limit=100, lease_s=60, max_attempts=2)]
    with session_scope(private_database_url) as s:
        row = s.get(InferenceFile, fid)
        assert row.status == "failed"
        assert "2 attempts" in row.error_message


def test_release_requeues_and_finish_completes_the_job(private_database_url, job):
    org_id, job_id = job
    a, b = add_files(private_database_url, org_id, job_id, 2)
    claimed = {f for f, j in queue.claim_inference_files(private_database_url, limit=100, lease_s=60, max_attempts=5) if j == job_id}
    assert claimed == {a, b}
    queue.release_inference_file(private_database_url, a)
    with session_scope(private_database_url) as s:
        assert s.get(InferenceFile, a).status == "queued"
    assert a in [f for f, _ in queue.claim_inference_files(private_database_url, limit=100, lease_s=60, max_attempts=5)]
    finish_file(private_database_url, a, detections=[{"artifact_type": "glitch", "start_ms": 1, "end_ms": 30, "confidence": 0.9}], duration_ms=1000)
    with session_scope(private_database_url) as s:
        assert s.get(InferenceJob, job_id).status == "processing"
    finish_file(private_database_url, b, error="corrupt audio")
    finish_file(private_database_url, b, detections=[], duration_ms=5)  # a late duplicate result changes nothing
    with session_scope(private_database_url) as s:
        j = s.get(InferenceJob, job_id)
        assert j.status == "completed" and j.completed_at is not None
        fa, fb = s.get(InferenceFile, a), s.get(InferenceFile, b)
        assert (fa.status, fa.detection_count, fa.duration_ms) == ("completed", 1, 1000)
        assert (fb.status, fb.error_message) == ("failed", "corrupt audio")


def test_dataset_audio_claims_lease_without_changing_status(private_database_url, job):
    org_id, _ = job
    with session_scope(private_database_url) as s:
        ds = Dataset(organization_id=org_id, name="d", artifact_types=[{"name": "glitch"}])
        s.add(ds)
        s.flush()
        files = [
            AudioFile(organization_id=org_id, dataset_id=ds.id, original_filename="a.wav", content_type="audio/wav",
                      declared_size=1, blob_key=f"k{i}", processing_status=st)
            for i, st in enumerate(["normalizing", "normalizing", "pending", "ready"])
        ]
        s.add_all(files)
        s.flush()
        ids = [f.id for f in files]
    claimed = queue.claim_dataset_audio(private_database_url, limit=100, lease_s=60, max_attempts=3)
    assert set(ids[:2]) <= set(claimed) and not set(ids[2:]) & set(claimed)
    assert not set(ids) & set(queue.claim_dataset_audio(private_database_url, limit=100, lease_s=60, max_attempts=3))
    queue.release_dataset_audio(private_database_url, ids[:1])
    assert ids[0] in queue.claim_dataset_audio(private_database_url, limit=100, lease_s=60, max_attempts=3)
    with session_scope(private_database_url) as s:
        assert s.get(AudioFile, ids[0]).processing_status == "normalizing"
