"""The upload -> confirm -> process flows with the S3 backend (moto's server over real HTTP).

A second Fathom app is deployed beside the default one, on its own database, with
``blob_backend=s3``: presigned POSTs go to the S3 server, Ray Data reads the audio and writes
feature shards there, and the detector loads its checkpoint from there.
"""

from __future__ import annotations

from contextlib import contextmanager

import boto3
import numpy as np
import pytest
import requests
from moto.server import ThreadedMotoServer

from cluster.accounts import create_api_key, create_organization
from cluster.db import session_scope
from data_pipelines.audio import encode_audio
from data_pipelines.synth import make_clip
from tests.factories import Client, free_port, register_detector, wait_for

APP = "fathom-s3"
BUCKET = "fathom-test"
CREDS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing", "s3_region": "us-east-1"}


@pytest.fixture(scope="module")
def s3_app(platform, settings_overrides, tmp_path_factory):
    from ray import serve

    from serve_app.app import AppArgs, build_app

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    endpoint = f"http://127.0.0.1:{server._port}"
    overrides = {
        **settings_overrides,
        "database_url": f"sqlite:///{tmp_path_factory.mktemp('s3db') / 'fathom.db'}",
        "blob_backend": "s3",
        "s3_endpoint_url": endpoint,
        "s3_bucket": BUCKET,
        "public_url": f"{platform.base_url}/s3",
        **CREDS,
    }
    args = AppArgs(settings=overrides)
    serve.run(build_app(args), name=APP, route_prefix="/s3")
    settings = args.build_settings()
    with session_scope(settings.database_url) as s:
        org = create_organization(s, "s3-org")
        _, key = create_api_key(s, org.id, "s3")
        org_id = org.id
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    state = {"server": server}

    @contextmanager
    def outage():
        """The S3 server is gone (connections refused) inside the block, then back on the same port
        with the same objects (moto keeps them in this process)."""
        state["server"].stop()
        try:
            yield
        finally:
            state["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=int(endpoint.rsplit(":", 1)[1]))
            state["server"].start()

    yield {
        "client": Client(f"{platform.base_url}/s3", key, org_id=org_id),
        "v3": Client(f"{platform.base_url}/s3", key, org_id=org_id, header="Authorization"),
        "settings": settings,
        "s3": s3,
        "outage": outage,
    }
    serve.delete(APP)
    state["server"].stop()


def keys_in_bucket(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def test_dataset_audio_upload_confirm_and_preprocess_on_s3(s3_app):
    client, s3 = s3_app["client"], s3_app["s3"]
    ds = client.post("/api/v1/datasets", json={"name": "s3", "artifact_types": [{"name": "glitch"}]}).json()
    clip = make_clip(11, duration_s=4.0)
    good = encode_audio(clip.waveform, clip.sample_rate, "flac")
    ids = {}
    for name, data in (("speech.flac", good), ("broken.wav", b"RIFF\x00\x00garbage" * 10)):
        info = client.post(f"/api/v1/datasets/{ds['id']}/audio/upload-url", json={"filename": name, "content_type": "application/octet-stream", "file_size": len(data)}).json()
        assert info["upload_url"].startswith(s3_app["settings"].s3_endpoint_url)
        r = requests.post(info["upload_url"], data=info["fields"], files={"file": (name, data)}, timeout=30)
        assert r.status_code == 204, r.text
        assert info["key"] in keys_in_bucket(s3, f"datasets/{ds['id']}/")
        assert client.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]}).status_code == 200
        ids[name] = info["audio_id"]

    def settled():
        items = {a["id"]: a for a in client.get(f"/api/v1/datasets/{ds['id']}/audio").json()["items"]}
        return items if all(a["processing_status"] in ("ready", "failed") for a in items.values()) else None

    items = wait_for(settled, timeout=180, what="preprocessing on S3")
    ok, bad = items[ids["speech.flac"]], items[ids["broken.wav"]]
    assert ok["processing_status"] == "ready" and abs(ok["duration_ms"] - 4000) <= 20
    assert bad["processing_status"] == "failed" and bad["error_message"]
    assert any(k.endswith(f"{ids['speech.flac']}.parquet") for k in keys_in_bucket(s3, "features/"))


def test_oversized_s3_upload_is_refused_at_confirm(s3_app):
    """moto does not enforce content-length-range; confirm checks the stored size itself."""
    client, s3 = s3_app["client"], s3_app["s3"]
    ds = client.post("/api/v1/datasets", json={"name": "s3-big", "artifact_types": [{"name": "glitch"}]}).json()
    data = encode_audio(np.zeros(16000, dtype=np.float32), 16000, "wav")
    info = client.post(f"/api/v1/datasets/{ds['id']}/audio/upload-url", json={"filename": "a.wav", "content_type": "audio/wav", "file_size": 100}).json()
    requests.post(info["upload_url"], data=info["fields"], files={"file": ("a.wav", data)}, timeout=30)
    r = client.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert r.status_code in (400, 413) and "declared" in r.json()["detail"]
    assert info["key"] not in keys_in_bucket(s3, f"datasets/{ds['id']}/")
    assert client.get(f"/api/v1/datasets/{ds['id']}/audio/{info['audio_id']}").json()["processing_status"] == "pending"


def test_inference_upload_confirm_and_download_on_s3(s3_app):
    client, settings = s3_app["client"], s3_app["settings"]
    model_id = register_detector(settings, client.org_id, ["glitch"])
    job = client.post("/api/v1/inference-jobs", json={"model_id": model_id}).json()
    clip = make_clip(12, duration_s=3.0)
    data = encode_audio(clip.waveform, clip.sample_rate, "wav")
    info = client.post(f"/api/v1/inference-jobs/{job['id']}/files/upload-url", json={"filename": "x.wav", "file_size_bytes": len(data)}).json()
    assert requests.post(info["upload_url"], data=info["upload_fields"], files={"file": data}, timeout=30).status_code == 204
    assert client.post(f"/api/v1/inference-jobs/{job['id']}/files/confirm", json={"file_id": info["file_id"]}).json()["status"] == "queued"
    f = wait_for(
        lambda: (lambda f: f if f["status"] in ("completed", "failed") else None)(client.get(f"/api/v1/inference-jobs/{job['id']}/files/{info['file_id']}").json()),
        timeout=120, what="inference on S3",
    )
    assert f["status"] == "completed", f["error_message"]
    assert abs(f["duration_ms"] - 3000) <= 20
    url = client.get(f"/api/v1/inference-jobs/{job['id']}/files/{info['file_id']}/download-url").json()["url"]
    assert url.startswith(settings.s3_endpoint_url)
    assert requests.get(url, timeout=30).content == data


def test_blob_store_down_during_uploads_loses_nothing(s3_app):
    client, v3, s3 = s3_app["client"], s3_app["v3"], s3_app["s3"]
    wave, rate = make_clip(13, duration_s=3.0).waveform, 16_000
    data = encode_audio(wave, rate, "wav")

    mid = v3.post("/api/v3/custom_models", json={"name": "s3-down", "language": "en"}).json()["id"]
    pair = {"audio_file": ("a.wav", data), "transcript_file": ("a.txt", b"hello there")}
    ds = client.post("/api/v1/datasets", json={"name": "s3-down", "artifact_types": [{"name": "glitch"}]}).json()
    info = client.post(f"/api/v1/datasets/{ds['id']}/audio/upload-url", json={"filename": "a.wav", "content_type": "audio/wav", "file_size": len(data)}).json()
    assert requests.post(info["upload_url"], data=info["fields"], files={"file": ("a.wav", data)}, timeout=30).status_code == 204

    with s3_app["outage"]():
        put = v3.put(f"/api/v3/custom_models/{mid}/data", data={"type": "train"}, files=pair)
        confirm = client.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]})
    assert put.status_code == 503 and put.json()["error_code"] == "SERVICE_UNAVAILABLE", put.text
    assert confirm.status_code == 503 and set(confirm.json()) == {"detail"}, confirm.text
    assert int(put.headers["Retry-After"]) > 0 and int(confirm.headers["Retry-After"]) > 0

    # Nothing half-done was recorded: no pair, model still without data, audio still pending.
    assert v3.get(f"/api/v3/custom_models/{mid}/data").json()["total_results"] == 0
    assert v3.get(f"/api/v3/custom_models/{mid}").json()["training_status"] == 1
    assert not keys_in_bucket(s3, f"custom_models/{mid}/")
    assert client.get(f"/api/v1/datasets/{ds['id']}/audio/{info['audio_id']}").json()["processing_status"] == "pending"

    # And the same requests succeed once the store is back.
    assert v3.put(f"/api/v3/custom_models/{mid}/data", data={"type": "train"}, files=pair).status_code == 200
    assert client.post(f"/api/v1/datasets/{ds['id']}/audio/confirm", json={"audio_id": info["audio_id"]}).status_code == 200


def test_blob_store_down_during_checkpoint_writes_registers_no_model(s3_app):
    from data_pipelines.stt_corpus import make_utterance, utterance_seed

    v3, s3 = s3_app["v3"], s3_app["s3"]
    mid = v3.post("/api/v3/custom_models", json={"name": "s3-ckpt", "language": "en"}).json()["id"]
    for i in range(8):
        wave, text = make_utterance(utterance_seed(14, i))
        files = {"audio_file": (f"{i}.wav", encode_audio(wave, 16_000, "wav")), "transcript_file": (f"{i}.txt", text.encode())}
        assert v3.put(f"/api/v3/custom_models/{mid}/data", data={"type": "train"}, files=files).status_code == 200
    assert v3.post(f"/api/v3/custom_models/{mid}/run", json={}).status_code == 200
    def under_way():
        m = v3.get(f"/api/v3/custom_models/{mid}").json()
        return m if m["training_status"] != 3 or m.get("training_progress", 0) > 10 else None

    try:
        started = wait_for(under_way, timeout=300, interval=1.5, what="training epochs under way")
    except AssertionError:
        from cluster.custom_models import submission_id_for
        from cluster.launcher import jobs_client

        raise AssertionError(jobs_client(s3_app["settings"]).get_job_logs(submission_id_for(mid, 1))[-5000:])
    assert started["training_status"] == 3, started
    with s3_app["outage"]():  # Ray Train checkpoints and the final model go to the store
        model = wait_for(
            lambda: (m := v3.get(f"/api/v3/custom_models/{mid}").json())["training_status"] in (4, 5) and m,
            timeout=600,
            interval=2,
            what="the run to end",
        )
    assert model["training_status"] == 5 and model["error"], model
    assert "training_metrics" not in model
    assert not keys_in_bucket(s3, f"custom_models/{mid}/checkpoints/")
    r = v3.post(
        "/api/v3/stt",
        data={"model": f"custom_model_{mid}", "language": "en"},
        files={"audio_file": ("a.wav", encode_audio(make_clip(15, duration_s=2.0).waveform, 16_000, "wav"))},
    )
    assert r.status_code == 409 and r.json()["error_code"] == "MODEL_NOT_READY", r.text
