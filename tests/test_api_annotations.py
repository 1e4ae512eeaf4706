"""v1 annotation sets and annotations over real HTTP against the deployed app.

Annotations here point at registered (upload-url) files that were never uploaded: their
rows exist, which is all an annotation needs, and the preprocessing dispatcher never
touches them. Where a known duration matters, it is written to the row as preprocessing
would write it.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster.db import session_scope
from cluster.tables import AudioFile

TYPES = [{"name": "glitch"}, {"name": "pause"}, {"name": "clipping"}]
PUBLISHED = {"detail": "Annotation set is published and cannot be changed"}


def make_dataset(client, types=TYPES) -> dict:
    r = client.post("/api/v1/datasets", json={"name": f"ds-{uuid.uuid4().hex[:6]}", "artifact_types": types})
    assert r.status_code == 201, r.text
    return r.json()


def register_audio(client, dataset_id: str, filename: str = "a.wav") -> str:
    r = client.post(
        f"/api/v1/datasets/{dataset_id}/audio/upload-url",
        json={"filename": filename, "content_type": "audio/wav", "file_size": 1000},
    )
    assert r.status_code == 201, r.text
    return r.json()["audio_id"]


def set_duration(platform, audio_id: str, duration_ms: int) -> None:
    with session_scope(platform.settings.database_url) as s:
        s.get(AudioFile, audio_id).duration_ms = duration_ms


def span(audio_id: str, start: int, end: int, kind: str = "glitch", **extra) -> dict:
    return {"audio_file_id": audio_id, "artifact_type": kind, "start_ms": start, "end_ms": end, **extra}


class Setup:
    """One dataset with two registered files and an empty draft set, as URLs."""

    def __init__(self, client):
        self.client = client
        self.dataset = make_dataset(client)
        self.base = f"/api/v1/datasets/{self.dataset['id']}/annotation-sets"
        self.audio = [register_audio(client, self.dataset["id"], f"f{i}.wav") for i in range(2)]
        r = client.post(self.base)
        assert r.status_code == 201, r.text
        self.set = r.json()
        self.set_url = f"{self.base}/{self.set['id']}"

    def add(self, body: dict):
        return self.client.post(f"{self.set_url}/annotations", json=body)


@pytest.fixture
def ds(org) -> Setup:
    return Setup(org)


# --- sets ------------------------------------------------------------------------------------


def test_sets_are_versioned_per_dataset(org, ds):
    assert ds.set["version"] == 1 and ds.set["status"] == "draft"
    assert ds.set["annotations"] == [] and ds.set["total_annotations"] == 0
    assert ds.set["published_at"] is None and ds.set["created_at"].endswith("Z")
    assert ds.set["dataset_id"] == ds.dataset["id"]
    second = org.post(ds.base).json()
    assert second["version"] == 2

    listed = org.get(ds.base).json()
    assert listed["total"] == 2 and [s["version"] for s in listed["items"]] == [2, 1]
    assert "annotations" not in listed["items"][0]

    other = make_dataset(org)
    assert org.post(f"/api/v1/datasets/{other['id']}/annotation-sets").json()["version"] == 1


def test_concurrent_creations_get_distinct_versions(org):
    dataset = make_dataset(org)
    url = f"/api/v1/datasets/{dataset['id']}/annotation-sets"
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: org.post(url), range(6)))
    assert [r.status_code for r in answers] == [201] * 6, [r.text for r in answers]
    assert sorted(r.json()["version"] for r in answers) == [1, 2, 3, 4, 5, 6]


def test_summary_counts_annotations_and_positive_duration(org, ds):
    a, b = ds.audio
    for body in (span(a, 0, 100), span(a, 500, 750, "pause"), span(b, 1000, 1010), span(b, 0, 40, "pause")):
        assert ds.add(body).status_code == 201
    summary = next(s for s in org.get(ds.base).json()["items"] if s["id"] == ds.set["id"])
    assert summary["total_annotations"] == 4
    assert summary["total_positive_duration_ms"] == 100 + 250 + 10 + 40
    assert summary["annotations_by_type"] == {"glitch": 2, "pause": 2}

    detail = org.get(ds.set_url).json()
    assert {k: detail[k] for k in summary} == summary
    assert [(x["audio_file_id"], x["start_ms"]) for x in detail["annotations"]] == sorted(
        [(a, 0), (a, 500), (b, 0), (b, 1000)]
    )


def test_publish_freezes_the_set(org, ds):
    r = org.post(f"{ds.set_url}/publish")
    assert r.status_code == 400 and "no annotations" in r.json()["detail"]
    created = ds.add(span(ds.audio[0], 0, 100)).json()

    r = org.post(f"{ds.set_url}/publish")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "published" and r.json()["published_at"].endswith("Z")
    assert r.json()["total_annotations"] == 1
    r = org.post(f"{ds.set_url}/publish")
    assert r.status_code == 409 and r.json() == {"detail": "Annotation set is already published"}

    ann_url = f"{ds.set_url}/annotations/{created['id']}"
    assert ds.add(span(ds.audio[0], 200, 300)).json() == PUBLISHED
    assert org.post(f"{ds.set_url}/annotations/bulk", json={"annotations": [span(ds.audio[0], 1, 2)]}).json() == PUBLISHED
    assert org.patch(ann_url, json={"end_ms": 50}).json() == PUBLISHED
    r = org.delete(ann_url)
    assert r.status_code == 409 and r.json() == PUBLISHED
    assert org.get(ds.set_url).json()["annotations"] == [created]


def test_unknown_and_foreign_sets_answer_404(org, other_org, ds):
    assert org.get(f"{ds.base}/{uuid.uuid4()}").json() == {"detail": "Annotation set not found"}
    other = make_dataset(org)  # a set is reachable under its own dataset only
    assert org.get(f"/api/v1/datasets/{other['id']}/annotation-sets/{ds.set['id']}").status_code == 404
    assert org.get(f"/api/v1/datasets/{uuid.uuid4()}/annotation-sets").json() == {"detail": "Dataset not found"}

    created = ds.add(span(ds.audio[0], 0, 100)).json()
    ann_url = f"{ds.set_url}/annotations/{created['id']}"
    for r in (
        other_org.get(ds.base),
        other_org.post(ds.base),
        other_org.get(ds.set_url),
        other_org.post(f"{ds.set_url}/publish"),
        other_org.post(f"{ds.set_url}/annotations", json=span(ds.audio[0], 0, 10)),
        other_org.post(f"{ds.set_url}/annotations/bulk", json={"annotations": [span(ds.audio[0], 0, 10)]}),
        other_org.patch(ann_url, json={"end_ms": 50}),
        other_org.delete(ann_url),
    ):
        assert r.status_code == 404 and r.json() == {"detail": "Dataset not found"}
    detail = org.get(ds.set_url).json()
    assert detail["status"] == "draft" and detail["annotations"] == [created]


# --- annotations -----------------------------------------------------------------------------


def test_create_annotation_shape_and_defaults(ds):
    r = ds.add(span(ds.audio[0], 120, 480))
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {
        "id", "annotation_set_id", "audio_file_id", "artifact_type", "start_ms", "end_ms", "confidence", "extra_data", "created_at",
    }
    assert (body["annotation_set_id"], body["audio_file_id"]) == (ds.set["id"], ds.audio[0])
    assert (body["start_ms"], body["end_ms"], body["confidence"], body["extra_data"]) == (120, 480, 1.0, {})
    r = ds.add(span(ds.audio[1], 0, 5, "pause", confidence=0.25, extra_data={"annotator": "kim", "pass": 2}))
    assert (r.json()["confidence"], r.json()["extra_data"]) == (0.25, {"annotator": "kim", "pass": 2})


def test_annotation_schema_errors_are_422(ds):
    a = ds.audio[0]
    for body, loc in (
        (span(a, 100, 100), ["body"]),
        (span(a, -1, 100), ["body", "start_ms"]),
        (span(a, 0, 100, confidence=1.5), ["body", "confidence"]),
        ({"artifact_type": "glitch", "start_ms": 0, "end_ms": 1}, ["body", "audio_file_id"]),
    ):
        r = ds.add(body)
        assert r.status_code == 422, r.text
        assert any(e["loc"] == loc and {"msg", "type"} <= e.keys() for e in r.json()["detail"]), r.json()
    assert "end_ms must be greater than start_ms" in ds.add(span(a, 5, 4)).json()["detail"][0]["msg"]


def test_annotations_must_fit_the_dataset_and_the_file(platform, org, other_org, ds):
    r = ds.add(span(ds.audio[0], 0, 10, "hum"))
    assert r.status_code == 400
    assert r.json()["detail"] == "artifact_type 'hum' is not a type of this dataset; valid types: ['glitch', 'pause', 'clipping']"

    # a file of another dataset, of another organization, or of nobody: one answer, naming the id
    other_dataset_file = register_audio(org, make_dataset(org)["id"])
    foreign_file = register_audio(other_org, make_dataset(other_org)["id"])
    for audio_id in (other_dataset_file, foreign_file, str(uuid.uuid4())):
        r = ds.add(span(audio_id, 0, 10))
        assert r.status_code == 400
        assert r.json() == {"detail": f"audio_file_id '{audio_id}' is not an audio file of this dataset"}

    set_duration(platform, ds.audio[1], 2000)
    assert ds.add(span(ds.audio[1], 1500, 2000)).status_code == 201
    r = ds.add(span(ds.audio[1], 1500, 2001))
    assert r.status_code == 400
    assert r.json()["detail"] == f"end_ms 2001 is past the end of audio file '{ds.audio[1]}' (duration_ms 2000)"
    assert org.get(ds.set_url).json()["total_annotations"] == 1


def test_bulk_is_all_or_nothing(org, ds):
    a, b = ds.audio
    url = f"{ds.set_url}/annotations/bulk"
    items = [span(a, i * 100, i * 100 + 50, ("glitch", "pause")[i % 2]) for i in range(5)] + [span(b, 0, 10)]
    r = org.post(url, json={"annotations": items})
    assert r.status_code == 201, r.text
    assert r.json()["created"] == 6 and len(r.json()["annotations"]) == 6
    assert [x["start_ms"] for x in r.json()["annotations"]] == [x["start_ms"] for x in items]

    bad = [span(a, 0, 10), span(a, 10, 20), span(a, 20, 30, "hum"), span(b, 0, 10)]
    r = org.post(url, json={"annotations": bad})
    assert r.status_code == 400 and r.json()["detail"].startswith("annotations[2]: artifact_type 'hum'")
    bad[2] = span(str(uuid.uuid4()), 0, 10)
    r = org.post(url, json={"annotations": bad})
    assert r.status_code == 400 and r.json()["detail"].startswith("annotations[2]: audio_file_id")
    r = org.post(url, json={"annotations": [span(a, 0, 10), span(a, 0, 10, confidence=2)]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "annotations", 1, "confidence"]
    r = org.post(url, json={"annotations": []})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "annotations"]
    assert org.get(ds.set_url).json()["total_annotations"] == 6


def test_patch_validates_the_merged_annotation(platform, org, ds):
    created = ds.add(span(ds.audio[0], 100, 200)).json()
    url = f"{ds.set_url}/annotations/{created['id']}"
    r = org.patch(url, json={"end_ms": 400, "artifact_type": "pause", "extra_data": {"note": "long"}})
    assert r.status_code == 200, r.text
    assert (r.json()["start_ms"], r.json()["end_ms"], r.json()["artifact_type"]) == (100, 400, "pause")
    assert r.json()["extra_data"] == {"note": "long"} and r.json()["created_at"] == created["created_at"]

    r = org.patch(url, json={"start_ms": 400})
    assert r.status_code == 400 and r.json() == {"detail": "end_ms must be greater than start_ms"}
    r = org.patch(url, json={"artifact_type": "hum"})
    assert r.status_code == 400 and "valid types" in r.json()["detail"]
    r = org.patch(url, json={"confidence": None})
    assert r.status_code == 400 and r.json()["detail"].startswith("confidence cannot be null")
    assert org.patch(url, json={"confidence": -0.1}).status_code == 422
    set_duration(platform, ds.audio[0], 300)
    r = org.patch(url, json={"start_ms": 0})  # the stored end (400) is now past the file's end
    assert r.status_code == 400 and "duration_ms 300" in r.json()["detail"]
    assert org.patch(url, json={"start_ms": 0, "end_ms": 300}).json()["end_ms"] == 300

    r = org.patch(f"{ds.set_url}/annotations/{uuid.uuid4()}", json={"end_ms": 5})
    assert r.status_code == 404 and r.json() == {"detail": "Annotation not found"}


def test_delete_annotation(org, ds):
    keep = ds.add(span(ds.audio[0], 0, 10)).json()
    gone = ds.add(span(ds.audio[0], 20, 30)).json()
    r = org.delete(f"{ds.set_url}/annotations/{gone['id']}")
    assert r.status_code == 204 and r.content == b""
    assert org.get(ds.set_url).json()["annotations"] == [keep]
    assert org.delete(f"{ds.set_url}/annotations/{gone['id']}").status_code == 404


# --- what annotations pin down ----------------------------------------------------------------


def test_audio_in_a_published_set_cannot_be_deleted(org, ds):
    a, b = ds.audio
    ds.add(span(a, 0, 10))
    assert org.post(f"{ds.set_url}/publish").status_code == 200
    draft_url = f"{ds.base}/{org.post(ds.base).json()['id']}"
    assert org.post(f"{draft_url}/annotations", json=span(b, 0, 10)).status_code == 201

    audio_base = f"/api/v1/datasets/{ds.dataset['id']}/audio"
    r = org.delete(f"{audio_base}/{a}")
    assert r.status_code == 409 and "published annotation set version 1" in r.json()["detail"]
    # a file annotated only in drafts goes, and takes its draft annotations with it
    assert org.delete(f"{audio_base}/{b}").status_code == 204
    assert org.get(draft_url).json()["annotations"] == []


def test_a_type_in_use_cannot_be_removed_from_the_dataset(org, ds):
    ds.add(span(ds.audio[0], 0, 10, "pause"))
    url = f"/api/v1/datasets/{ds.dataset['id']}"
    r = org.patch(url, json={"artifact_types": [{"name": "glitch"}]})
    assert r.status_code == 409
    assert r.json() == {"detail": "artifact types ['pause'] are used by annotations of this dataset and cannot be removed"}
    r = org.patch(url, json={"artifact_types": [{"name": "glitch"}, {"name": "pause"}]})
    assert r.status_code == 200 and [t["name"] for t in r.json()["artifact_types"]] == ["glitch", "pause"]
