"""Bad input over real HTTP against the deployed app.

Every refusal must be a clear 4xx in the shape of the API it came to (v1 ``{"detail": ...}``,
v3 ``{"error", "message", "error_code", "details"}``), must change nothing else, and the
deployment must keep serving afterwards (``assert_serving`` ends each group).

What other files prove is not repeated: filename cleaning and upload forms as units
(test_uploads.py, test_blobs.py), decoder refusals as units (test_audio.py), and the
single-item schema errors of each resource (test_api_*.py). This file drives the rest end
to end: hostile audio through the v1 inference flow and the v3 endpoints, forged upload
forms at the deployed storage route, bulk annotations with one bad item, every documented
range on both sides, huge and deeply nested bodies, and transcripts that cannot fit their audio.
"""

from __future__ import annotations

import http.client
import io
import json
import time
import uuid
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import jiwer
import numpy as np
import pytest
import requests
import soundfile as sf
import torch
import torchaudio.functional as AF
from ray import serve

from cluster.blob_signing import UploadPolicy, sign_upload
from cluster.db import session_scope, signing_secret
from cluster.tables import AudioFile
from data_pipelines.audio import encode_audio
from data_pipelines.synth import speak
from data_pipelines.text import normalize_transcript
from serve_app.app import APP_NAME
from serve_app.routes.custom_models import MAX_TRANSCRIPT_CHARS_PER_SECOND, TRANSCRIPT_SLACK_CHARS
from tests.factories import Client, register_detector, silent_flac, wait_for

SENTENCE = "the patient reports mild chest pain"
LIMIT_S = 4 * 3600  # settings.max_audio_seconds of the test deployment (the default)
JSON = {"Content-Type": "application/json"}


# --- shared checks ------------------------------------------------------------------------------


def v1_detail(r: requests.Response, status: int, *hints: str) -> str:
    """A v1 error other than 422: exactly ``{"detail": "<message>"}``, naming every hint."""
    assert r.status_code == status, r.text[:2000]
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    for hint in hints:
        assert hint in body["detail"], (hint, body)
    return body["detail"]


def v1_invalid(r: requests.Response, loc: list) -> list[dict]:
    """A v1 422: FastAPI's list of errors, one of them at (or under) ``loc``."""
    assert r.status_code == 422, r.text[:2000]
    assert set(r.json()) == {"detail"}
    errors = r.json()["detail"]
    assert errors and all({"loc", "msg", "type"} <= e.keys() for e in errors), errors
    assert any(e["loc"][: len(loc)] == loc for e in errors), errors
    return errors


def v3_error(r: requests.Response, status: int, code: str, *hints: str) -> dict:
    """A v3 error of ``status`` and ``code`` whose message or details name every hint."""
    assert r.status_code == status, r.text[:2000]
    body = r.json()
    assert set(body) == {"error", "message", "error_code", "details"} and body["error_code"] == code, body
    assert isinstance(body["message"], str) and isinstance(body["details"], dict)
    for hint in hints:
        assert hint in body["message"] or hint in json.dumps(body["details"]), (hint, body)
    return body


def bearer(client: Client) -> dict:
    return {"Authorization": f"Bearer {client.key}"}


def assert_serving(platform, client: Client) -> None:
    """Health, a v1 and a v3 request are answered, and Serve reports nothing unhealthy."""
    health = requests.get(f"{platform.base_url}/healthz", timeout=30)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert client.get("/api/v1/datasets").status_code == 200
    assert client.get("/api/v3/custom_models", headers=bearer(client)).status_code == 200
    app = serve.status().applications[APP_NAME]
    assert app.status == "RUNNING", app.status
    assert all(d.status != "UNHEALTHY" for d in app.deployments.values()), app.deployments


def stored(platform, prefix: str) -> list[Path]:
    root = Path(platform.settings.blob_root) / prefix
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- audio ---------------------------------------------------------------------------------------


def _float_wav(x: np.ndarray, rate: int = 16_000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(x, np.float32), rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@cache
def speech() -> tuple[np.ndarray, int]:
    return speak(SENTENCE)  # ~2.7 s at 22.05 kHz


def speech_seconds() -> float:
    wave, rate = speech()
    return wave.size / rate


@cache
def eight_hour_flac() -> bytes:
    return silent_flac(8.0)


@cache
def hostile_audio() -> dict[str, tuple[str, bytes, str]]:
    """name -> (filename, bytes, a phrase of the refusal); every entry point refuses each."""
    rng = np.random.default_rng(11)
    wave, rate = speech()
    wav, flac = encode_audio(wave, rate, "wav"), encode_audio(wave, rate, "flac")
    nan, inf = np.zeros(8000, np.float32), np.zeros(8000, np.float32)
    nan[100], inf[200] = np.nan, -np.inf
    pdf = b"%PDF-1.7\n" + b"1 0 obj << >> endobj\n" * 200
    return {
        "corrupt": ("take.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00" + rng.bytes(30_000), "corrupt"),
        "truncated": ("take.wav", wav[: len(wav) // 2], "truncated file: the header declares 2.73 s"),
        "zero_duration": ("take.wav", _float_wav(np.zeros(0)), "zero duration"),
        "pdf_behind_audio_type": ("take.wav", pdf, "unsupported or corrupt"),
        "eight_hours": ("long.flac", eight_hour_flac(), f"header declares 28800.0 s, longer than the limit of {LIMIT_S} s"),
        "nan_samples": ("take.wav", _float_wav(nan), "NaN or Inf"),
        "inf_samples": ("take.wav", _float_wav(inf), "NaN or Inf"),
        "garbage_after_header": ("take.flac", flac[:64] + rng.bytes(len(flac) - 64), "no decodable audio"),
    }


@cache
def unusual_audio() -> dict[str, tuple[str, bytes]]:
    """Valid audio a client may well send, all of the same speech: accepted and heard alike."""
    wave, rate = speech()
    high = AF.resample(torch.from_numpy(wave), rate, 192_000).numpy()
    return {
        "mono": ("take.wav", encode_audio(wave, rate, "wav")),
        "eight_channels": ("take.wav", encode_audio(np.repeat(wave[:, None], 8, axis=1), rate, "wav")),
        "rate_192k": ("take.wav", encode_audio(high, 192_000, "wav")),
        "flac_named_wav": ("take.wav", encode_audio(wave, rate, "flac")),  # the bytes decide, not the name
    }


# --- v1 inference flow ----------------------------------------------------------------------------


def request_file(client: Client, job_id: str, filename: str, size: int) -> requests.Response:
    return client.post(
        f"/api/v1/inference-jobs/{job_id}/files/upload-url",
        json={"filename": filename, "file_size_bytes": size, "content_type": "audio/wav"},
    )


def post_form(info: dict, data: bytes, fields: dict | None = None) -> requests.Response:
    """The vendor client's storage POST, with ``fields`` in place of the signed ones when given."""
    form = info["upload_fields"] if fields is None else fields
    return requests.post(info["upload_url"], data=form, files={"file": ("f", data)}, timeout=60)


def test_v1_inference_fails_each_bad_file_alone(platform, org):
    model = register_detector(platform.settings, org.org_id, ["glitch", "pause"])
    # Every frame passes threshold 0: one event per type over the whole file, whose confidence
    # is the mean frame probability, a fingerprint of the decoded samples.
    config = {"threshold": 0.0, "merge_window_ms": 0, "min_duration_ms": 0}
    job = org.post("/api/v1/inference-jobs", json={"model_id": model, "config": config}).json()
    base = f"/api/v1/inference-jobs/{job['id']}"
    hostile, unusual = hostile_audio(), unusual_audio()
    files: dict[str, str] = {}
    for name, (filename, data) in [*((n, (f, d)) for n, (f, d, _) in hostile.items()), *unusual.items()]:
        r = request_file(org, job["id"], filename, len(data))
        assert r.status_code == 201, (name, r.text)
        assert post_form(r.json(), data).status_code == 204, name
        confirmed = org.post(f"{base}/files/confirm", json={"file_id": r.json()["file_id"]})
        assert confirmed.status_code == 200 and confirmed.json()["status"] == "queued", (name, confirmed.text)
        files[name] = r.json()["file_id"]

    # Refused before processing: bytes beyond the declared size (by storage), an empty upload (at confirm).
    data = unusual["mono"][1]
    bigger = request_file(org, job["id"], "big.wav", len(data) - 1).json()
    v1_detail(post_form(bigger, data), 413, f"{len(data) - 1}-byte limit")
    v1_detail(org.post(f"{base}/files/confirm", json={"file_id": bigger["file_id"]}), 409, "upload not found")
    empty = request_file(org, job["id"], "empty.wav", 10).json()
    assert post_form(empty, b"").status_code == 204
    v1_detail(org.post(f"{base}/files/confirm", json={"file_id": empty["file_id"]}), 400, "empty (0 bytes)")
    v1_invalid(request_file(org, job["id"], "zero.wav", 0), ["body", "file_size_bytes"])

    def finished():
        j = org.get(base).json()
        return j if j["processed_files"] == j["total_files"] == len(files) else None

    done = wait_for(finished, timeout=240, what="inference of every confirmed file")
    by_id = {f["id"]: f for f in done["files"]}
    for name, (_, _, phrase) in hostile.items():
        f = by_id[files[name]]
        assert f["status"] == "failed" and phrase in f["error_message"], (name, f)
        assert f["detections"] == [] and f["duration_ms"] is None, (name, f)
    for name in unusual:
        f = by_id[files[name]]
        assert f["status"] == "completed" and f["error_message"] is None, (name, f)
        assert abs(f["duration_ms"] - 1000 * speech_seconds()) <= 10, (name, f["duration_ms"])
        spans = sorted((d["artifact_type"], d["start_ms"], d["end_ms"]) for d in f["detections"])
        assert [s[:2] for s in spans] == [("glitch", 0), ("pause", 0)], (name, spans)
        assert all(f["duration_ms"] - 20 <= s[2] <= f["duration_ms"] for s in spans), (name, spans)
    mono = sorted(by_id[files["mono"]]["detections"], key=lambda d: d["artifact_type"])
    # 8 identical channels average to the mono samples and FLAC holds the same samples: identical answers
    for name in ("eight_channels", "flac_named_wav"):
        assert sorted(by_id[files[name]]["detections"], key=lambda d: d["artifact_type"]) == mono, name
    high = sorted(by_id[files["rate_192k"]]["detections"], key=lambda d: d["artifact_type"])
    for got, want in zip(high, mono):
        assert got["confidence"] == pytest.approx(want["confidence"], abs=0.02), (got, want)
    assert (done["status"], done["failed_files"]) == ("completed", len(hostile))
    assert by_id[bigger["file_id"]]["status"] == by_id[empty["file_id"]]["status"] == "pending"
    assert_serving(platform, org)


# --- v3 audio ----------------------------------------------------------------------------------------


def create_model(client: Client, name: str = "model") -> int:
    r = client.post("/api/v3/custom_models", json={"name": name, "language": "en"}, headers=bearer(client))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def put_pair(client: Client, model_id: int, audio: tuple[str, bytes], transcript: tuple[str, bytes] = ("t.txt", b"hello")):
    return client.put(
        f"/api/v3/custom_models/{model_id}/data",
        data={"type": "train"},
        files={"audio_file": audio, "transcript_file": transcript},
        headers=bearer(client),
    )


def transcribe(client: Client, audio: tuple[str, bytes]) -> requests.Response:
    return client.post(
        "/api/v3/stt", data={"model": "general", "language": "en"}, files={"audio_file": audio}, headers=bearer(client)
    )


def test_v3_refuses_bad_audio_on_upload_and_transcription(platform, org):
    mid = create_model(org)
    for name, (filename, data, phrase) in hostile_audio().items():
        started = time.monotonic()
        v3_error(put_pair(org, mid, (filename, data)), 400, "INVALID_AUDIO", phrase, "audio_file")
        if name == "eight_hours":  # refused from the header: decoding 8 h would take far longer
            assert time.monotonic() - started < 10
        v3_error(transcribe(org, (filename, data)), 400, "INVALID_AUDIO", phrase)
    for r in (put_pair(org, mid, ("empty.wav", b"")), transcribe(org, ("empty.wav", b""))):
        v3_error(r, 400, "INVALID_AUDIO", "empty (0 bytes)")

    # More bytes sent than declared: the app sees the declared prefix, a cut multipart body, and
    # refuses it in the v3 shape; the surplus then reaches the HTTP server as a request of its own.
    files = {"audio_file": ("a.wav", unusual_audio()["mono"][1]), "transcript_file": ("t.txt", b"hello")}
    prepared = requests.Request("PUT", "http://x", data={"type": "train"}, files=files).prepare()
    declared = len(prepared.body) // 2
    url = urlparse(platform.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest("PUT", f"/api/v3/custom_models/{mid}/data")
        conn.putheader("Authorization", f"Bearer {org.key}")
        conn.putheader("Content-Type", prepared.headers["Content-Type"])
        conn.putheader("Content-Length", str(declared))
        conn.endheaders()
        conn.send(prepared.body[:declared])
        answer = conn.getresponse()
        status, body = answer.status, json.loads(answer.read())
        conn.sock.sendall(prepared.body[declared:])
        surplus = b""
        while chunk := conn.sock.recv(65536):
            surplus += chunk
    finally:
        conn.close()
    assert status in (400, 422) and set(body) == {"error", "message", "error_code", "details"}, body
    assert surplus.startswith(b"HTTP/1.1 400"), surplus[:200]

    assert org.get(f"/api/v3/custom_models/{mid}/data", headers=bearer(org)).json()["total_results"] == 0
    assert org.get(f"/api/v3/custom_models/{mid}", headers=bearer(org)).json()["training_status"] == 1
    assert stored(platform, f"custom_models/{mid}") == []
    assert_serving(platform, org)


def test_v3_accepts_unusual_valid_audio_and_hears_the_same_speech(platform, org):
    mid = create_model(org)
    texts = {}
    for name, audio in unusual_audio().items():
        r = put_pair(org, mid, audio, ("t.txt", SENTENCE.encode()))
        assert r.status_code == 200, (name, r.text)
        assert r.json()["duration_seconds"] == pytest.approx(speech_seconds(), abs=0.01), name
        r = transcribe(org, audio)
        assert r.status_code == 200, (name, r.text)
        assert r.json()["duration"] == pytest.approx(speech_seconds(), abs=0.01), name
        texts[name] = r.json()["text"]
    assert texts["eight_channels"] == texts["flac_named_wav"] == texts["mono"] and texts["mono"]
    assert jiwer.wer(texts["mono"], texts["rate_192k"]) <= 0.2, texts
    assert len(stored(platform, f"custom_models/{mid}")) == len(unusual_audio())
    assert_serving(platform, org)


# --- uploads ---------------------------------------------------------------------------------------------


def make_dataset(client: Client, types: tuple[str, ...] = ("glitch", "pause")) -> str:
    body = {"name": f"ds-{uuid.uuid4().hex[:6]}", "artifact_types": [{"name": t} for t in types]}
    r = client.post("/api/v1/datasets", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def register_audio(client: Client, dataset_id: str, size: int = 1000) -> dict:
    r = client.post(
        f"/api/v1/datasets/{dataset_id}/audio/upload-url",
        json={"filename": "a.wav", "content_type": "audio/wav", "file_size": size},
    )
    assert r.status_code == 201, r.text
    return r.json() | {"upload_fields": r.json()["fields"]}


def new_set(client: Client, dataset_id: str) -> str:
    base = f"/api/v1/datasets/{dataset_id}/annotation-sets"
    return f"{base}/{client.post(base).json()['id']}"


def test_forged_upload_forms_store_nothing(platform, org, other_org):
    data = unusual_audio()["mono"][1]
    ds, foreign_ds = make_dataset(org), make_dataset(other_org)
    mine, sibling = register_audio(org, ds, len(data)), register_audio(org, ds, len(data))
    foreign = register_audio(other_org, foreign_ds, len(data))
    fields = mine["upload_fields"]
    policy = UploadPolicy.decode(fields["policy"])
    # what the API signed for this upload, had it been asked a while ago
    expired = sign_upload(
        signing_secret(platform.settings.database_url), UploadPolicy(policy.key, len(data), int(time.time()) - 1, "audio/wav")
    )
    raised = UploadPolicy(policy.key, 10 << 30, policy.expires, "audio/wav").encode()  # a bigger cap, not re-signed
    flipped = ("0" if fields["signature"][0] != "0" else "1") + fields["signature"][1:]
    forged = {
        "expired": (expired, 403, "expired"),
        "signature": ({**fields, "signature": flipped}, 403, "signature does not match"),
        "bigger_cap": ({**fields, "policy": raised}, 403, "signature does not match"),
        "content_type": ({**fields, "Content-Type": "text/html"}, 403, "Content-Type"),
        "sibling_key": ({**fields, "key": sibling["key"]}, 403, "differs from the key"),
        "foreign_key": ({**fields, "key": foreign["key"]}, 403, "differs from the key"),
        "traversal_key": ({**fields, "key": f"{mine['key']}/../../../../escape.wav"}, 403, "differs from the key"),
        "no_policy": ({"key": mine["key"], "signature": fields["signature"]}, 400, "policy"),
    }
    for name, (form, status, hint) in forged.items():
        v1_detail(post_form(mine, data, form), status, hint)
    assert stored(platform, f"datasets/{ds}") == stored(platform, f"datasets/{foreign_ds}") == []
    assert not list(Path(platform.settings.data_dir).rglob("escape.wav"))
    for client, dataset, audio in ((org, ds, mine), (org, ds, sibling), (other_org, foreign_ds, foreign)):
        r = client.post(f"/api/v1/datasets/{dataset}/audio/confirm", json={"audio_id": audio["audio_id"]})
        v1_detail(r, 409, "upload not found")
    r = other_org.post(f"/api/v1/datasets/{ds}/audio/confirm", json={"audio_id": mine["audio_id"]})
    v1_detail(r, 404, "Dataset not found")

    # The genuine form still works, once; the same URL again is refused and the first bytes stay.
    assert post_form(mine, data).status_code == 204
    v1_detail(post_form(mine, b"\0" * len(data)), 409, "single-use")
    assert [p.read_bytes() for p in stored(platform, f"datasets/{ds}")] == [data]
    assert_serving(platform, org)


INFERENCE_FILENAMES = [  # (given, shown)
    ("../../etc/passwd.wav", "passwd.wav"),
    ("C:\\Users\\me\\take.wav", "take.wav"),
    ("a\x00b\nc\x1b.wav", "abc.wav"),
    ("invoice\u202egpj.wav", "invoicegpj.wav"),
    ("séance 日本語 😀.wav", "séance 日本語 😀.wav"),
]


def test_inference_filenames_are_for_display_only(platform, org):
    model = register_detector(platform.settings, org.org_id, ["glitch"])
    job_id = org.post("/api/v1/inference-jobs", json={"model_id": model}).json()["id"]
    base = f"/api/v1/inference-jobs/{job_id}/files"
    data = unusual_audio()["mono"][1]
    for given, shown in INFERENCE_FILENAMES:
        r = request_file(org, job_id, given, len(data))
        assert r.status_code == 201, r.text
        info = r.json()
        assert info["s3_key"] == f"inference/{job_id}/{info['file_id']}"
        assert post_form(info, data).status_code == 204
        confirmed = org.post(f"{base}/confirm", json={"file_id": info["file_id"]}).json()
        assert confirmed["original_filename"] == shown, given
        link = org.get(f"{base}/{info['file_id']}/download-url").json()
        assert link["filename"] == shown
        got = requests.get(link["url"], timeout=60)
        assert got.content == data and got.headers["Content-Disposition"].isascii()
    for nothing_left in ("/\x00/..", " / "):
        v1_detail(request_file(org, job_id, nothing_left, 10), 400, "no name left")
    assert len(org.get(f"/api/v1/inference-jobs/{job_id}").json()["files"]) == len(INFERENCE_FILENAMES)
    assert_serving(platform, org)


def test_v3_filenames_are_for_display_only(platform, org):
    mid = create_model(org)
    audio = unusual_audio()["mono"][1]
    r = put_pair(org, mid, ("../../etc/take\u202e.wav", audio), ("..\\..\\notes 日本.txt", SENTENCE.encode()))
    assert r.status_code == 200, r.text
    assert (r.json()["filename"], r.json()["transcript_filename"]) == ("take.wav", "notes 日本.txt")
    for names, field in (
        (("..", "t.txt"), "audio_file"),
        (("a.wav", "/"), "transcript_file"),
        (("x" * 501 + ".wav", "t.txt"), "audio_file"),
    ):
        body = v3_error(put_pair(org, mid, (names[0], audio), (names[1], b"hello")), 400, "INVALID_FILENAME", field)
        assert body["details"] == {"field": field}
    v3_error(transcribe(org, ("..", audio)), 400, "INVALID_FILENAME", "audio_file")
    only = Path(platform.settings.blob_root) / f"custom_models/{mid}/data/{r.json()['id']}"
    assert stored(platform, f"custom_models/{mid}") == [only] and only.read_bytes() == audio
    assert org.get(f"/api/v3/custom_models/{mid}/data", headers=bearer(org)).json()["total_results"] == 1
    assert_serving(platform, org)


# --- annotations -------------------------------------------------------------------------------------------


def span(audio_id: str, start, end, kind: str = "glitch", **extra) -> dict:
    return {"audio_file_id": audio_id, "artifact_type": kind, "start_ms": start, "end_ms": end, **extra}


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# One bad item at index 3 of five: (its maker given (own file, foreign file), status, where the answer points).
BAD_ITEMS = {
    "end_equals_start": (lambda a, f: span(a, 50, 50), 422, ["body", "annotations", 3]),
    "end_before_start": (lambda a, f: span(a, 60, 50), 422, ["body", "annotations", 3]),
    "past_the_file": (lambda a, f: span(a, 1900, 2001), 400, "annotations[3]: end_ms 2001 is past the end"),
    "foreign_file": (lambda a, f: span(f, 0, 10), 400, "annotations[3]: audio_file_id"),
    "unknown_type": (lambda a, f: span(a, 0, 10, "hum"), 400, "annotations[3]: artifact_type 'hum'"),
    "huge_end": (lambda a, f: span(a, 0, 10**30), 422, ["body", "annotations", 3, "end_ms"]),
    "text_start": (lambda a, f: span(a, "soon", 10), 422, ["body", "annotations", 3, "start_ms"]),
    "fractional_start": (lambda a, f: span(a, 1.5, 10), 422, ["body", "annotations", 3, "start_ms"]),
    "deep_extra_data": (lambda a, f: span(a, 0, 10, extra_data=nested(500)), 422, ["body", "annotations", 3, "extra_data"]),
    "list_extra_data": (lambda a, f: span(a, 0, 10, extra_data=[1, 2]), 422, ["body", "annotations", 3, "extra_data"]),
}


@pytest.mark.parametrize("case", list(BAD_ITEMS))
def test_bulk_with_one_bad_item_saves_nothing(platform, org, other_org, case):
    ds = make_dataset(org)
    audio = register_audio(org, ds)["audio_id"]
    foreign = register_audio(other_org, make_dataset(other_org))["audio_id"]
    with session_scope(platform.settings.database_url) as s:
        s.get(AudioFile, audio).duration_ms = 2000  # as preprocessing records it
    set_url = new_set(org, ds)
    kept = org.post(f"{set_url}/annotations", json=span(audio, 0, 5)).json()
    make, status, where = BAD_ITEMS[case]
    items = [span(audio, 100 * i, 100 * i + 50) for i in range(3)] + [make(audio, foreign), span(audio, 900, 950)]
    r = org.post(f"{set_url}/annotations/bulk", json={"annotations": items})
    if status == 422:
        v1_invalid(r, where)
    else:
        v1_detail(r, status, where)
    assert org.get(set_url).json()["annotations"] == [kept]


def test_annotation_values_the_store_cannot_hold_are_refused(platform, org):
    ds = make_dataset(org)
    audio = register_audio(org, ds)["audio_id"]  # duration unknown: only the schema bounds the span
    set_url = new_set(org, ds)
    raw = '{"audio_file_id": "%s", "artifact_type": "glitch", "start_ms": 0, "end_ms": %s%s}'
    for end, extra, loc in (
        ("9223372036854775808", "", ["body", "end_ms"]),  # 2**63: past any SQL integer
        ("10", ', "confidence": NaN', ["body", "confidence"]),  # Python's parser reads NaN; JSON has none
        ("10", ', "extra_data": {"score": Infinity}', ["body", "extra_data"]),
        ("10", ', "extra_data": {"note": "\\ud800"}', ["body", "extra_data"]),  # an unpaired surrogate
    ):
        v1_invalid(org.post(f"{set_url}/annotations", data=raw % (audio, end, extra), headers=JSON), loc)
    created = org.post(f"{set_url}/annotations", json=span(audio, 0, 2**31 - 1, extra_data=nested(32))).json()
    assert created["end_ms"] == 2**31 - 1 and created["extra_data"] == nested(32)
    url = f"{set_url}/annotations/{created['id']}"
    v1_invalid(org.patch(url, json={"extra_data": nested(33)}), ["body", "extra_data"])
    v1_invalid(org.patch(url, json={"end_ms": 2**31}), ["body", "end_ms"])
    assert org.get(set_url).json()["annotations"] == [created]
    assert_serving(platform, org)


# --- configs and bodies ---------------------------------------------------------------------------------------


TRAINING_OUT_OF_RANGE = [  # test_api_detection.py covers epochs, validation_split, learning_rate, batch_size
    {"chunk_size_ms": 99}, {"chunk_size_ms": 10_001}, {"stride_ms": 9}, {"stride_ms": 10_001, "chunk_size_ms": 10_000},
    {"num_workers": -1}, {"num_workers": 65}, {"artifact_types": []}, {"artifact_types": [f"t{i}" for i in range(65)]},
    {"artifact_types": "glitch"}, {"epochs": "ten"}, {"epochs": 2.5}, {"use_gpu": "maybe"}, {"batch_size": None},
    {"augmentation": {"noise": {"snr_db": [30, 10]}}}, {"augmentation": {"noise": {"probability": 1.5}}},
    {"augmentation": {"gain": {"level_db": [-50, 0]}}}, {"augmentation": {"noise": {"snr_db": [10, 61]}}},
    {"augmentation": {"reverb": True}}, {"augmentation": {"noise": {"snr_db": 20}}}, {"augmentation": "on"},
    {"augmentation": {"probability": -0.1}}, {"augmentation": {"speed": {"probability": 0.5}}},
]
TRAINING_EDGES = [
    {"epochs": 1}, {"epochs": 100}, {"validation_split": 0.1}, {"validation_split": 0.5}, {"learning_rate": 0.0001},
    {"learning_rate": 0.1}, {"batch_size": 8}, {"batch_size": 256}, {"chunk_size_ms": 100, "stride_ms": 10},
    {"chunk_size_ms": 10_000, "stride_ms": 10_000}, {"num_workers": 0}, {"num_workers": 64},
    {"augmentation": {"enabled": False}}, {"augmentation": {"noise": {"snr_db": [-5, 60]}, "gain": {"level_db": [-30, 20]}}},
    {"augmentation": {"noise": None, "codec": {"probability": 1}, "probability": 1}},
]


def test_training_config_ranges(platform, org):
    """Past a range on either side: 422 at the field. At its edges: validation passes (404 for the unknown dataset)."""
    ids = {"dataset_id": str(uuid.uuid4()), "annotation_set_id": str(uuid.uuid4())}

    def start(config: dict):
        return org.post("/api/v1/training-jobs", json={**ids, "config": {"artifact_types": ["glitch"], **config}})

    def start_raw(config: str):  # JSON text, for the constants Python's parser reads but JSON lacks
        return org.post("/api/v1/training-jobs", data=json.dumps(ids)[:-1] + f', "config": {config}}}', headers=JSON)

    for config in TRAINING_OUT_OF_RANGE:
        v1_invalid(start(config), ["body", "config", next(iter(config))])
    for name in ("learning_rate", "validation_split", "epochs"):
        for token in ("NaN", "Infinity", "-Infinity"):
            v1_invalid(start_raw(f'{{"artifact_types": ["glitch"], "{name}": {token}}}'), ["body", "config", name])
    v1_invalid(start_raw('["glitch"]'), ["body", "config"])
    for config in TRAINING_EDGES:
        v1_detail(start(config), 404, "Dataset not found")
    assert org.get("/api/v1/training-jobs").json()["total"] == 0
    assert_serving(platform, org)


def test_inference_config_ranges(platform, org):
    model = register_detector(platform.settings, org.org_id, ["glitch"])
    jobs = "/api/v1/inference-jobs"
    for config in (
        {"threshold": -0.01}, {"threshold": 1.01}, {"min_duration_ms": -1}, {"merge_window_ms": "wide"},
        {"merge_window_ms": 2.5}, {"threshold": None},
    ):
        v1_invalid(org.post(jobs, json={"model_id": model, "config": config}), ["body", "config", next(iter(config))])
    for token in ("NaN", "Infinity"):
        raw = '{"model_id": "%s", "config": {"threshold": %s}}' % (model, token)
        v1_invalid(org.post(jobs, data=raw, headers=JSON), ["body", "config", "threshold"])
    v1_invalid(org.post(jobs, json={"model_id": model, "config": [0.5]}), ["body", "config"])
    assert org.get(jobs).json()["total"] == 0
    for config in (
        {"threshold": 0.0, "merge_window_ms": 0, "min_duration_ms": 0},
        {"threshold": 1.0, "merge_window_ms": 5000, "min_duration_ms": 1000},
    ):
        r = org.post(jobs, json={"model_id": model, "config": config})
        assert r.status_code == 201 and r.json()["config"] == config, r.text
    assert org.get(jobs).json()["total"] == 2
    assert_serving(platform, org)


V1_PAGES_REFUSED = [
    ({"page": 0}, "page"), ({"page": 1_000_001}, "page"), ({"page": 10**30}, "page"), ({"page": "two"}, "page"),
    ({"page_size": 0}, "page_size"), ({"page_size": 101}, "page_size"), ({"page_size": 2.5}, "page_size"),
]


def test_v1_pagination_limits(platform, org):
    ds = make_dataset(org)
    register_audio(org, ds)
    for path in ("/api/v1/datasets", f"/api/v1/datasets/{ds}/audio", "/api/v1/models", "/api/v1/training-jobs",
                 "/api/v1/inference-jobs"):
        for params, name in V1_PAGES_REFUSED:
            v1_invalid(org.get(path, params=params), ["query", name])
        assert org.get(path, params={"page": 1_000_000, "page_size": 100}).json()["items"] == []
        edge = org.get(path, params={"page": 1, "page_size": 1}).json()
        assert (edge["page"], edge["page_size"]) == (1, 1) and len(edge["items"]) <= 1
    assert org.get(f"/api/v1/datasets/{ds}/audio", params={"page_size": 1}).json()["total"] == 1
    assert_serving(platform, org)


def test_v3_pagination_limits_and_ids(platform, org):
    mid, h = create_model(org), bearer(org)
    lists = {"/api/v3/custom_models": 100, "/api/v3/speech-to-text/models": 100, f"/api/v3/custom_models/{mid}/data": 1000}
    for path, most in lists.items():
        for params in (
            {"offset": -1}, {"offset": 10_000_001}, {"offset": 2**64}, {"limit": 0}, {"limit": most + 1},
            {"limit": "ten"}, {"per_page": most + 1}, {"page": 0}, {"page": 1_000_001},
        ):
            body = v3_error(org.get(path, params=params, headers=h), 422, "VALIDATION_ERROR")
            assert body["details"]["errors"][0]["loc"] == ["query", next(iter(params))], body
        r = org.get(path, params={"limit": most, "offset": 10_000_000}, headers=h)
        assert r.status_code == 200 and r.json()["result"] == []
    v3_error(org.get(f"/api/v3/custom_models/{mid}/log", params={"limit": 1001}, headers=h), 422, "VALIDATION_ERROR")
    for status in (0, 6):
        r = org.get("/api/v3/custom_models", params={"training_status": status}, headers=h)
        v3_error(r, 422, "VALIDATION_ERROR")
    # ids past any SQL integer name nothing
    for url in (f"/api/v3/custom_models/{2**63}", f"/api/v3/custom_models/{10**30}/data"):
        v3_error(org.get(url, headers=h), 404, "MODEL_NOT_FOUND")
    v3_error(org.delete(f"/api/v3/custom_models/{mid}/data/{2**64}", headers=h), 404, "DATA_NOT_FOUND")
    v3_error(org.get("/api/v3/custom_models/twelve", headers=h), 422, "VALIDATION_ERROR")
    assert org.get(f"/api/v3/custom_models/{mid}", headers=h).json()["training_status"] == 1
    assert_serving(platform, org)


def test_huge_deep_and_malformed_bodies(platform, org):
    h = {**JSON, **bearer(org)}
    huge = "x" * (20 << 20)  # 20 MB
    r = org.post("/api/v1/datasets", json={"name": huge, "artifact_types": [{"name": "glitch"}]})
    assert r.status_code in (413, 422) and set(r.json()) == {"detail"} and len(r.content) < 10_000, r.text[:500]
    r = org.post("/api/v3/custom_models", json={"name": huge, "language": "en"}, headers=h)
    assert r.status_code in (413, 422) and len(r.content) < 10_000, r.text[:500]
    v3_error(r, r.status_code, {413: "PAYLOAD_TOO_LARGE", 422: "VALIDATION_ERROR"}[r.status_code])
    ds = make_dataset(org)
    set_url = new_set(org, ds)
    many = [span(str(uuid.uuid4()), 0, 10)] * 150_000  # ~17 MB, 15 times the bulk limit
    r = org.post(f"{set_url}/annotations/bulk", json={"annotations": many})
    assert r.status_code in (413, 422) and set(r.json()) == {"detail"} and len(r.content) < 10_000, r.text[:500]
    assert org.get(set_url).json()["total_annotations"] == 0
    assert_serving(platform, org)

    deep = "[" * 10_000 + "]" * 10_000
    v1_detail(org.post("/api/v1/datasets", data=deep, headers=JSON), 400, "error parsing the body")
    v3_error(org.post("/api/v3/custom_models", data=deep, headers=h), 400, "BAD_REQUEST", "error parsing the body")
    for body in ('{"name": ', "null", "[1, 2]", '{"name": "\\ud800", "artifact_types": [{"name": "a"}]}'):
        v1_invalid(org.post("/api/v1/datasets", data=body, headers=JSON), ["body"])
        v3_error(org.post("/api/v3/custom_models", data=body.replace("artifact_types", "x"), headers=h), 422, "VALIDATION_ERROR")
    v1_invalid(org.post("/api/v1/datasets", data={"name": "a form"}), ["body"])

    nul = org.post("/api/v1/datasets", json={"name": "a\x00b", "artifact_types": [{"name": "a"}]})
    assert "NUL" in v1_invalid(nul, ["body", "name"])[0]["msg"]  # neither database is asked to store it

    keys = "/api/v1/auth/api-keys"
    naive = org.post(keys, json={"name": "naive", "expires_at": "2999-01-01T00:00:00"})  # no offset: UTC
    assert naive.status_code == 201 and naive.json()["expires_at"] == "2999-01-01T00:00:00Z", naive.text
    v1_detail(org.post(keys, json={"name": "past", "expires_at": "0001-01-01T00:00:00"}), 400, "in the future")
    for stamp in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2030-13-01T00:00:00Z", 1e300):
        v1_invalid(org.post(keys, json={"name": "odd", "expires_at": stamp}), ["body", "expires_at"])
    assert sorted(k["name"] for k in org.get(keys).json() if k["name"] in ("naive", "past", "odd")) == ["naive"]
    assert org.get("/api/v1/datasets").json()["total"] == 1
    assert_serving(platform, org)


# --- transcripts ---------------------------------------------------------------------------------------------


def words(n: int) -> bytes:
    """A transcript whose normalised text is exactly n characters."""
    text = ("talk " * n)[:n].rstrip()
    text += "k" * (n - len(text))
    assert len(normalize_transcript(text)) == n
    return text.encode()


def test_transcripts_that_cannot_fit_their_audio(platform, org):
    mid = create_model(org)
    second = encode_audio(0.3 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000), 16_000, "wav")  # 1.000 s
    most = int(MAX_TRANSCRIPT_CHARS_PER_SECOND * 1.0) + TRANSCRIPT_SLACK_CHARS
    assert 60 <= most <= 200  # above fast speech (~25 characters a second), far below a page

    def upload(transcript: bytes, audio: bytes = second):
        return put_pair(org, mid, ("clip.wav", audio), ("t.txt", transcript))

    body = v3_error(upload(words(most + 1)), 400, "INVALID_TRANSCRIPT", "is it the transcript of this audio?")
    assert body["details"] == {
        "field": "transcript_file", "transcript_characters": most + 1, "max_characters": most, "audio_seconds": 1.0,
    }
    half = encode_audio(np.full(8000, 0.1, np.float32), 16_000, "wav")
    v3_error(upload(words(3000), half), 400, "INVALID_TRANSCRIPT", "do not fit 0.50 s")  # a page for half a second
    at_limit = words(1 << 20)  # the size limit itself passes the size check, then cannot fit 1 s
    v3_error(upload(at_limit), 400, "INVALID_TRANSCRIPT", "do not fit 1.00 s")
    v3_error(upload(at_limit + b"k"), 413, "PAYLOAD_TOO_LARGE", "transcript_file")
    for text in ("hello there".encode("utf-16"), b"\x1b[31m" * 50):  # not UTF-8; control characters
        v3_error(upload(text), 400, "INVALID_TRANSCRIPT", "binary data")
    assert org.get(f"/api/v3/custom_models/{mid}/data", headers=bearer(org)).json()["total_results"] == 0
    assert stored(platform, f"custom_models/{mid}") == []

    r = upload(words(most))  # exactly at the bound
    assert r.status_code == 200 and r.json()["training_status"] == 2, r.text
    assert org.get(f"/api/v3/custom_models/{mid}/data", headers=bearer(org)).json()["total_results"] == 1
    assert len(stored(platform, f"custom_models/{mid}")) == 1
    assert_serving(platform, org)
