"""Test helpers shared by the suite: free ports, HTTP clients per organization, waiting."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import requests

from cluster.accounts import create_api_key, create_organization
from cluster.db import session_scope

DASHBOARD_ORIGIN = "https://dashboard.example.com"  # the one browser origin the test deployment allows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client(requests.Session):
    """requests.Session bound to one base URL and one API key (one organization)."""

    def __init__(self, base_url: str, key: str, *, header: str = "X-API-Key", org_id: str = ""):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.org_id = org_id
        if header == "Authorization":
            self.headers["Authorization"] = f"Bearer {key}"
        else:
            self.headers[header] = key

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", 60)
        return super().request(method, url, *args, **kwargs)


def new_org(database_url: str, base_url: str, name: str = "org", *, scopes: list[str] | None = None, **kw: Any) -> Client:
    with session_scope(database_url) as s:
        org = create_organization(s, name, **kw)
        _, key = create_api_key(s, org.id, f"{name}-key", scopes=scopes)
        org_id = org.id
    return Client(base_url, key, org_id=org_id)


def ray_worker_pids(session_id: int, title: str) -> set[int]:
    """PIDs of this test cluster's Ray worker processes whose title starts with ``ray::<title>``
    (found through the OS: other Ray clusters on the machine share names and ports)."""
    import os

    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            if cmd.startswith(f"ray::{title}".encode()) and os.getsid(int(entry)) == session_id:
                found.add(int(entry))
        except (OSError, ProcessLookupError):
            continue
    return found


def wait_for(predicate: Callable[[], Any], *, timeout: float = 120, interval: float = 0.5, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def training_log(client: Client, job_id: str, page_size: int = 100) -> list[dict[str, Any]]:
    """Every entry of a detector training job's log, read page by page."""
    entries: list[dict[str, Any]] = []
    for page in range(1, 1000):
        body = client.get(f"/api/v1/training-jobs/{job_id}/logs", params={"page": page, "page_size": page_size}).json()
        entries += body["items"]
        if len(entries) >= body["total"] or not body["items"]:
            return entries
    raise AssertionError("the training log did not end")


def register_detector(settings: Any, organization_id: str, artifact_types: list[str], feature_version: int | None = None,
                      model: Any = None, **fields: Any) -> str:
    """A detector model row plus a checkpoint in the blob store, for API tests that need a model
    without training one: ``model`` (a FrameDetector) or an untrained one (``feature_version``:
    the current set unless given)."""
    from cluster.blobs import make_blob_store
    from cluster.db import init_schema
    from cluster.tables import DetectorModel, new_id
    from data_pipelines.features import FEATURE_VERSION, feature_count
    from train_jobs.models.detector import DetectorDims, FrameDetector, save_checkpoint
    from train_jobs.windows import WindowSpec

    version = feature_version or FEATURE_VERSION
    model = model or FrameDetector(DetectorDims(n_features=feature_count(version), n_classes=len(artifact_types)))
    data = save_checkpoint(model, artifact_types=artifact_types, window=WindowSpec.from_ms(500, 250), feature_version=version)
    blobs = make_blob_store(settings, secret=init_schema(settings.database_url).signing_secret.encode())
    model_id = new_id()
    key = f"models/detectors/{model_id}.pt"
    blobs.put_bytes(key, data)
    with session_scope(settings.database_url) as s:
        s.add(DetectorModel(id=model_id, organization_id=organization_id, artifact_types=list(artifact_types), checkpoint_key=key, **fields))
    return model_id


def upload_dataset_audio(client, dataset_id: str, data: bytes, filename: str) -> str:
    r = client.post(
        f"/api/v1/datasets/{dataset_id}/audio/upload-url",
        json={"filename": filename, "content_type": "application/octet-stream", "file_size": len(data)},
    )
    assert r.status_code == 201, r.text
    info = r.json()
    up = requests.post(info["upload_url"], data=info["fields"], files={"file": (filename, data)}, timeout=60)
    assert up.status_code == 204, up.text
    r = client.post(f"/api/v1/datasets/{dataset_id}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert r.status_code == 200, r.text
    return info["audio_id"]


def upload_inference_file(client, job_id: str, data: bytes, filename: str) -> str:
    """The vendor page's client code, unchanged but for the session object."""
    response = client.post(
        f"/api/v1/inference-jobs/{job_id}/files/upload-url",
        json={"filename": filename, "content_type": "audio/wav", "file_size_bytes": len(data)},
    )
    upload_info = response.json()
    up = requests.post(upload_info["upload_url"], data=upload_info["upload_fields"], files={"file": (filename, data)}, timeout=60)
    assert up.status_code == 204, up.text
    response = client.post(f"/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": upload_info["file_id"]})
    assert response.json()["status"] == "queued"
    return upload_info["file_id"]


def silent_flac(hours: float, rate: int = 8000) -> bytes:
    """Digital silence as 16-bit FLAC: 8 h is about 0.7 MB on the wire and 230 M samples decoded."""
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    block_s = 600
    with sf.SoundFile(buf, "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        for _ in range(round(hours * 3600 / block_s)):
            out.write(np.zeros(rate * block_s, np.int16))
    return buf.getvalue()


# --- small detection datasets (synthetic clips, annotated with their own events) ---------------


def upload(client, dataset_id: str, data: bytes, name: str = "a.wav", confirm: bool = True) -> str:
    info = client.post(f"/api/v1/datasets/{dataset_id}/audio/upload-url", json={"filename": name, "content_type": "audio/wav", "file_size": len(data)}).json()
    assert requests.post(info["upload_url"], data=info["fields"], files={"file": data}, timeout=30).status_code == 204
    if confirm:
        assert client.post(f"/api/v1/datasets/{dataset_id}/audio/confirm", json={"audio_id": info["audio_id"]}).status_code == 200
    return info["audio_id"]


def wait_ready(client, dataset_id: str, n: int) -> list[dict]:
    def ready():
        items = client.get(f"/api/v1/datasets/{dataset_id}/audio").json()["items"]
        done = [a for a in items if a["processing_status"] in ("ready", "failed")]
        return items if len(done) == n else None

    return wait_for(ready, timeout=240, what="dataset audio processed")


def make_dataset(client, types: list[str], clip_seconds: list[float], seed: int = 0) -> tuple[str, dict[str, list]]:
    ds = client.post("/api/v1/datasets", json={"name": "contract", "artifact_types": [{"name": t} for t in types]}).json()["id"]
    from data_pipelines.audio import encode_audio
    from data_pipelines.synth import make_clip

    events = {}
    for i, secs in enumerate(clip_seconds):
        clip = make_clip(seed + i, duration_s=secs, artifact_types=("glitch", "long_pause"))
        events[upload(client, ds, encode_audio(clip.waveform, clip.sample_rate, "wav"))] = clip.events
    assert all(a["processing_status"] == "ready" for a in wait_ready(client, ds, len(clip_seconds)))
    return ds, events


def annotate(client, ds: str, events: dict[str, list], *, publish: bool) -> str:
    set_id = client.post(f"/api/v1/datasets/{ds}/annotation-sets").json()["id"]
    items = [{"audio_file_id": a, "artifact_type": e.artifact_type, "start_ms": e.start_ms, "end_ms": e.end_ms} for a, evs in events.items() for e in evs]
    assert client.post(f"/api/v1/datasets/{ds}/annotation-sets/{set_id}/annotations/bulk", json={"annotations": items}).status_code in (200, 201)
    if publish:
        assert client.post(f"/api/v1/datasets/{ds}/annotation-sets/{set_id}/publish").status_code == 200
    return set_id


def replica_names(deployment: str) -> list[str]:
    """The live Serve replica actors of one of Fathom's deployments."""
    import ray

    from serve_app.app import APP_NAME

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{APP_NAME}#{deployment}#")
    ]


def kill_replicas(deployment: str) -> list[str]:
    """Kill every replica of ``deployment`` at once, as a crash would (Serve starts new ones)."""
    import ray

    names = replica_names(deployment)
    assert names, f"no {deployment} replica to kill"
    for name in names:
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    return names


def race(call: Callable[[], Any], n: int = 4) -> list[Any]:
    """Run ``call`` in ``n`` threads released at the same moment; their results, in finishing order."""
    import threading

    results: list[Any] = []
    barrier = threading.Barrier(n)

    def one() -> None:
        barrier.wait()
        results.append(call())

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def inference_rows(url: str, organization_id: str, files: list[dict[str, Any]], *, job_status: str = "processing") -> tuple[str, list[str]]:
    """An inference job of a model row (no checkpoint) with one file row per dict of field overrides,
    written straight to the database: for tests of the state functions, no Serve app involved."""
    from cluster.tables import DetectorModel, InferenceFile, InferenceJob

    with session_scope(url) as s:
        model = DetectorModel(organization_id=organization_id, artifact_types=["glitch"], checkpoint_key="models/x.pt")
        s.add(model)
        s.flush()
        job = InferenceJob(organization_id=organization_id, model_id=model.id, status=job_status)
        s.add(job)
        s.flush()
        rows = [
            InferenceFile(organization_id=organization_id, inference_job_id=job.id, original_filename=f"{i}.wav", content_type="audio/wav",
                          declared_size=10, blob_key=f"k{i}", **{"status": "processing", **fields})
            for i, fields in enumerate(files)
        ]
        s.add_all(rows)
        s.flush()
        return job.id, [r.id for r in rows]
