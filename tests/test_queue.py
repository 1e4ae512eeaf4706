"""Durable queue semantics on the real database (SQLite, or PostgreSQL with FATHOM_TEST_DATABASE=postgres)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from cluster import queue
from cluster.accounts import create_organization
from cluster.db import init_schema, session_scope
from cluster.inference import JOB_ENDED, cancel_job, fail_job, finish_file, job_counts, queue_file, refresh_job
from cluster.pending_uploads import UPLOAD_NEVER_COMPLETED, expire_pending_uploads
from cluster.tables import AudioFile, Dataset, DetectorModel, InferenceFile, InferenceJob, utcnow
from schemas.settings import Settings


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


def add_files(url: str, org_id: str, job_id: str, n: int, status: str = "queued", **fields) -> list[str]:
    ids = []
    with session_scope(url) as s:
        for i in range(n):
            f = InferenceFile(
                organization_id=org_id, inference_job_id=job_id, original_filename=f"{i}.wav", content_type="audio/wav",
                declared_size=10, blob_key=f"inference/{job_id}/{status}-{i}", status=status,
                queued_at=None if status == "pending" else utcnow() + timedelta(microseconds=i), **fields,
            )
            s.add(f)
            s.flush()
            ids.append(f.id)
    return ids


def add_dataset_audio(url: str, org_id: str, rows: list[tuple[str, dict]]) -> list[tuple[str, str]]:
    """Dataset audio in one new dataset, one row per (processing_status, extra fields); returns (id, blob_key)s."""
    with session_scope(url) as s:
        ds = Dataset(organization_id=org_id, name="d", artifact_types=[{"name": "glitch"}])
        s.add(ds)
        s.flush()
        audio = [
            AudioFile(organization_id=org_id, dataset_id=ds.id, original_filename="a.wav", content_type="audio/wav",
                      declared_size=1, blob_key=f"datasets/{ds.id}/audio/{st}-{i}", processing_status=st, **fields)
            for i, (st, fields) in enumerate(rows)
        ]
        s.add_all(audio)
        s.flush()
        return [(a.id, a.blob_key) for a in audio]


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
        j = s.get(InferenceJob, job_id)  # the file failed alone: its job ends, not failed
        assert (j.status, j.error_message) == ("completed", None) and j.completed_at is not None


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
    rows = add_dataset_audio(private_database_url, org_id, [(st, {}) for st in ("normalizing", "normalizing", "pending", "ready")])
    ids = [audio_id for audio_id, _ in rows]
    claimed = queue.claim_dataset_audio(private_database_url, limit=100, lease_s=60, max_attempts=3)
    assert set(ids[:2]) <= set(claimed) and not set(ids[2:]) & set(claimed)
    assert not set(ids) & set(queue.claim_dataset_audio(private_database_url, limit=100, lease_s=60, max_attempts=3))
    queue.release_dataset_audio(private_database_url, ids[:1])
    assert ids[0] in queue.claim_dataset_audio(private_database_url, limit=100, lease_s=60, max_attempts=3)
    with session_scope(private_database_url) as s:
        assert s.get(AudioFile, ids[0]).processing_status == "normalizing"


def claim_all(url: str, job_id: str) -> set[str]:
    return {f for f, j in queue.claim_inference_files(url, limit=100, lease_s=60, max_attempts=5) if j == job_id}


def job_row(url: str, job_id: str) -> InferenceJob:
    with session_scope(url) as s:
        return s.get(InferenceJob, job_id)


def confirm_and_claim(url: str, org_id: str, job_id: str) -> str:
    """One uploaded file confirmed (pending -> queued) and claimed by a dispatcher; its id."""
    (file_id,) = add_files(url, org_id, job_id, 1, status="pending")
    with session_scope(url) as s:
        assert queue_file(s, job_id, file_id)
    assert claim_all(url, job_id) == {file_id}
    return file_id


def test_a_file_that_fails_never_fails_the_job(private_database_url, job):
    """The vendor loop's one file at a time: a corrupt first file, then a good one."""
    org_id, job_id = job
    bad = confirm_and_claim(private_database_url, org_id, job_id)
    finish_file(private_database_url, bad, error="corrupt audio")
    j = job_row(private_database_url, job_id)
    assert (j.status, j.error_message) == ("completed", None)
    (good,) = add_files(private_database_url, org_id, job_id, 1, status="pending")
    with session_scope(private_database_url) as s:
        assert queue_file(s, job_id, good)
    j = job_row(private_database_url, job_id)
    assert (j.status, j.completed_at, j.error_message) == ("processing", None, None)
    assert claim_all(private_database_url, job_id) == {good}
    finish_file(private_database_url, good, detections=[], duration_ms=1000)
    with session_scope(private_database_url) as s:
        j = s.get(InferenceJob, job_id)
        counts = job_counts(s, [job_id])[job_id]
    assert (j.status, j.error_message) == ("completed", None)
    assert (counts.total_files, counts.processed_files, counts.failed_files) == (2, 2, 1)


def test_fail_job_ends_the_job_and_its_unfinished_files_for_good(private_database_url, job):
    org_id, job_id = job
    done, running, waiting = add_files(private_database_url, org_id, job_id, 3)
    (unconfirmed,) = add_files(private_database_url, org_id, job_id, 1, status="pending")
    assert claim_all(private_database_url, job_id) == {done, running, waiting}
    queue.release_inference_file(private_database_url, waiting)
    finish_file(private_database_url, done, detections=[], duration_ms=10)
    with session_scope(private_database_url) as s:
        assert fail_job(s, job_id, "Model is archived and cannot be used for inference")
    with session_scope(private_database_url) as s:
        assert not fail_job(s, job_id, "again")  # ended already: the first cause stays
        assert not cancel_job(s, job_id)
        rows = {f: s.get(InferenceFile, f) for f in (done, running, waiting, unconfirmed)}
        assert rows[done].status == "completed"
        for f in (running, waiting, unconfirmed):
            assert (rows[f].status, rows[f].error_message) == ("failed", "Model is archived and cannot be used for inference")
    finish_file(private_database_url, running, detections=[], duration_ms=10)  # a late result changes nothing
    (late,) = add_files(private_database_url, org_id, job_id, 1, status="pending")
    with session_scope(private_database_url) as s:
        assert not queue_file(s, job_id, late)  # an ended job takes no files
        refresh_job(s, job_id)
    j = job_row(private_database_url, job_id)
    assert (j.status, j.error_message) == ("failed", "Model is archived and cannot be used for inference")
    assert j.completed_at is not None and "failed" in JOB_ENDED
    with session_scope(private_database_url) as s:
        assert s.get(InferenceFile, running).status == "failed" and s.get(InferenceFile, late).status == "pending"


def test_files_finishing_at_once_leave_the_job_completed(private_database_url, job):
    """Each finish counts the job's files after locking the job: none sees another as still active."""
    org_id, job_id = job
    for _ in range(3):
        ids = add_files(private_database_url, org_id, job_id, 6)
        assert claim_all(private_database_url, job_id) == set(ids)
        barrier = threading.Barrier(len(ids))

        def finish(fid: str) -> None:
            barrier.wait()
            finish_file(private_database_url, fid, detections=[], duration_ms=10)

        threads = [threading.Thread(target=finish, args=(f,)) for f in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert job_row(private_database_url, job_id).status == "completed"


def test_unconfirmed_uploads_expire_after_the_url_and_its_grace(private_database_url, job, tmp_path):
    """Inference files are removed; dataset audio is failed; confirmed and recent uploads stay."""
    org_id, job_id = job
    settings = Settings(data_dir=tmp_path, database_url=private_database_url, upload_url_expiry_s=60, upload_grace_s=30)
    old = {"created_at": utcnow() - timedelta(seconds=91)}
    recent = {"created_at": utcnow() - timedelta(seconds=80)}  # URL expired, still in its grace
    (stale,) = add_files(private_database_url, org_id, job_id, 1, status="pending", **old)
    (fresh,) = add_files(private_database_url, org_id, job_id, 1, status="pending", **recent)
    (confirmed,) = add_files(private_database_url, org_id, job_id, 1, **old)
    a_stale, a_fresh, a_confirmed = add_dataset_audio(
        private_database_url, org_id, [("pending", old), ("pending", recent), ("normalizing", old)]
    )
    keys = expire_pending_uploads(private_database_url, settings)
    assert sorted(keys) == sorted([f"inference/{job_id}/pending-0", a_stale[1]])
    assert expire_pending_uploads(private_database_url, settings) == []
    with session_scope(private_database_url) as s:
        assert s.get(InferenceFile, stale) is None
        assert s.get(InferenceFile, fresh).status == "pending" and s.get(InferenceFile, confirmed).status == "queued"
        assert not queue_file(s, job_id, stale)  # a confirm after the sweep cannot bring it back
        a = s.get(AudioFile, a_stale[0])
        assert (a.processing_status, a.error_message) == ("failed", UPLOAD_NEVER_COMPLETED)
        assert s.get(AudioFile, a_fresh[0]).processing_status == "pending"
        assert s.get(AudioFile, a_confirmed[0]).processing_status == "normalizing"
        assert job_counts(s, [job_id])[job_id].total_files == 1


def test_a_job_read_while_its_last_file_finishes_shows_status_and_counts_together(private_database_url, job):
    """The API loads the job row first (ownership), then its counts: the answer must not mix the two moments."""
    from serve_app.routes.inference_jobs import job_public

    org_id, job_id = job
    only = confirm_and_claim(private_database_url, org_id, job_id)
    with session_scope(private_database_url) as reader:
        loaded = reader.get(InferenceJob, job_id)
        assert loaded.status == "processing"
        finish_file(private_database_url, only, error="corrupt audio")  # another process, between the two reads
        view = job_public(reader, [loaded])[0]
    assert (view.processed_files, view.total_files, view.failed_files) == (1, 1, 1)
    assert (view.status, view.error_message, view.completed_at is not None) == ("completed", None, True)
