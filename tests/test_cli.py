"""The ``fathom`` CLI against the real test platform, through its installed entry point (a subprocess).

A folder of synthetic recordings goes in (an upload interrupted by Ctrl-C and resumed), CSV and
Audacity labels are imported, a detector trains briefly, inference over a second folder writes
JSON lines, CSV and Audacity label tracks; the custom-STT, alias and evaluation commands run too.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_pipelines.audio import encode_audio
from data_pipelines.stt_corpus import make_utterance, utterance_seed
from data_pipelines.synth import make_clip
from tests.factories import Client, wait_for

pytestmark = pytest.mark.slow

FATHOM = str(Path(sys.executable).parent / "fathom")
TYPES = ("glitch", "long_pause", "clipping", "noise_burst")
N_TRAIN, CLIP_S = 16, 8.0  # 128 s: past the test platform's 120 s training minimum
TRAIN = {"num_workers": 1, "batch_size": 32, "learning_rate": 0.003, "chunk_size_ms": 500, "stride_ms": 250}


def fathom(env: dict, *args: str, ok: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    r = subprocess.run([FATHOM, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert r.returncode == 0, f"fathom {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def write_clips(folder: Path, seeds: range, duration_s: float) -> dict[str, list]:
    """Clips in two sub-folders and two formats; returns {relative name: events}."""
    truth = {}
    for i, seed in enumerate(seeds):
        clip = make_clip(seed, duration_s=duration_s)
        name = f"{'day1' if i % 2 else 'day2'}/call_{seed}.{'flac' if i % 3 == 0 else 'wav'}"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(encode_audio(clip.waveform, 16_000, Path(name).suffix[1:]))
        truth[name] = clip.events
    return truth


@pytest.fixture(scope="module")
def env(platform, tmp_path_factory) -> dict:
    client = platform.org("cli")
    config = tmp_path_factory.mktemp("cli") / "fathom" / "config.json"
    env = {**os.environ, "FATHOM_CLI_CONFIG": str(config), "NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"}
    env.pop("FATHOM_URL", None)
    env.pop("FATHOM_API_KEY", None)
    r = fathom(env, "login", platform.base_url, "--key", client.key)
    assert "logged in" in r.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and json.loads(config.read_text())["key"] == client.key
    return {**env, "_org_key": client.key}


def test_login_refuses_a_key_the_server_refuses(platform, tmp_path):
    config = tmp_path / "config.json"
    r = fathom({**os.environ, "FATHOM_CLI_CONFIG": str(config)}, "login", platform.base_url, "--key", "fk_nope", ok=False)
    assert r.returncode == 1 and "401" in r.stderr and not config.exists()
    r = fathom({**os.environ, "FATHOM_CLI_CONFIG": str(config)}, "datasets", "create", "x", "--artifact-type", "glitch", ok=False)
    assert r.returncode == 1 and "not logged in" in r.stderr


def test_a_folder_becomes_a_trained_detector_and_detections_on_disk(env, platform, tmp_path):
    folder = tmp_path / "recordings"
    truth = write_clips(folder, range(4000, 4000 + N_TRAIN), CLIP_S)
    dataset = fathom(env, "datasets", "create", "cli-calls", *sum((["--artifact-type", t] for t in TYPES), [])).stdout.strip()

    # An upload stopped by Ctrl-C after its first files, then the same command again.
    proc = subprocess.Popen([FATHOM, "datasets", "upload", dataset, str(folder), "--workers", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    api = Client(platform.base_url, env["_org_key"])
    confirmed = lambda: [a for a in api.get(f"/api/v1/datasets/{dataset}/audio", params={"page_size": 100}).json()["items"]  # noqa: E731
                         if a["processing_status"] != "pending"]
    wait_for(lambda: confirmed() or proc.poll() is not None, timeout=60, interval=0.02, what="first confirmed upload")
    proc.send_signal(signal.SIGINT)
    _, stopped = proc.communicate(timeout=60)
    first = len(confirmed())
    print(f"upload stopped with {proc.returncode} after {first} of {N_TRAIN} files")
    assert proc.returncode in (0, 130), stopped
    r = fathom(env, "datasets", "upload", dataset, str(folder))
    if proc.returncode == 130:  # stopped part-way, as meant
        assert f"interrupted after {first} of {N_TRAIN} files" in stopped and first < N_TRAIN
        assert f"{first} of {N_TRAIN} files are already in the dataset" in r.stderr
    assert f"uploaded {N_TRAIN - first}, skipped {first}, failed 0" in r.stderr
    audio = wait_for(lambda: (items := api.get(f"/api/v1/datasets/{dataset}/audio", params={"page_size": 100}).json()["items"])
                     and all(a["processing_status"] == "ready" for a in items if a["processing_status"] != "pending") and items,
                     timeout=300, interval=1, what="dataset audio ready")
    ready = sorted(a["original_filename"] for a in audio if a["processing_status"] == "ready")
    assert ready == sorted(Path(name).name for name in truth)  # every file once

    # Labels: a CSV for the day1 files, Audacity label tracks (one per audio file, by stem) for day2.
    set_id = fathom(env, "annotations", "create-set", dataset).stdout.strip()
    labels = tmp_path / "labels"
    labels.mkdir()
    with (labels / "day1.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "label", "start", "end"])
        for name, events in truth.items():
            if name.startswith("day1/"):
                w.writerows([name, e.artifact_type, e.start_ms / 1000, e.end_ms / 1000] for e in events)
    tracks = []
    for name, events in truth.items():
        if name.startswith("day2/"):
            track = labels / f"{Path(name).stem}.txt"
            track.write_text("".join(f"{e.start_ms / 1000:.3f}\t{e.end_ms / 1000:.3f}\t{e.artifact_type}\n" for e in events))
            tracks.append(str(track))
    r = fathom(env, "annotations", "import", dataset, set_id, str(labels / "day1.csv"), *tracks)
    assert f"imported {sum(len(e) for e in truth.values())} annotations from {1 + len(tracks)} file(s)" in r.stderr
    fathom(env, "annotations", "publish", dataset, set_id)

    r = fathom(env, "train", dataset, set_id, *sum((["--artifact-type", t] for t in TYPES), []), "--epochs", "2",
               "--config", json.dumps(TRAIN), "--watch")
    job_id = r.stdout.strip().splitlines()[0]
    assert "held-out validation" in r.stderr and "epoch 2/2" in r.stderr and "loss" in r.stderr
    job = api.get(f"/api/v1/training-jobs/{job_id}").json()
    assert job["status"] == "completed" and f"model {job['model_id']}" in r.stderr

    # Inference over new files (one of them not audio), in the three output formats.
    new = tmp_path / "new_calls"
    held_out = write_clips(new, range(4900, 4903), 6.0)
    (new / "broken.wav").write_bytes(b"RIFF\x00\x00 not audio at all")
    out = tmp_path / "detections.jsonl"
    r = fathom(env, "infer", job["model_id"], str(new), "--out", str(out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(x["file"] for x in records) == sorted([*held_out, "broken.wav"])
    broken = next(x for x in records if x["file"] == "broken.wav")
    assert broken["status"] == "failed" and broken["error_message"] and "1 failed" in r.stderr
    for x in records:
        if x["file"] != "broken.wav":
            assert x["status"] == "completed" and x["duration_ms"] == 6000
            assert all(d["artifact_type"] in TYPES and 0 <= d["start_ms"] < d["end_ms"] <= 6000 for d in x["detections"])
    inference_id = re.search(r"inference job ([0-9a-f-]{36})", r.stderr).group(1)
    listed = api.get(f"/api/v1/inference-jobs/{inference_id}").json()
    assert {f["id"]: f["detections"] for f in listed["files"]} == {x["file_id"]: x["detections"] for x in records}

    name = f"dataset-{dataset}"
    fathom(env, "infer", f"{name}@1", str(new), "--out", str(tmp_path / "d.csv"), "--format", "csv")
    rows = list(csv.DictReader((tmp_path / "d.csv").open()))
    assert {r["file"] for r in rows} == {x["file"] for x in records}
    assert sum(1 for r in rows if r["artifact_type"]) == sum(len(x["detections"]) for x in records)
    fathom(env, "infer", f"{name}@1", str(new), "--out", str(tmp_path / "tracks"), "--format", "audacity")
    for x in held_out:
        assert (tmp_path / "tracks" / Path(x).with_suffix(".txt")).exists()

    # The registry: an alias set, a rollback refused with the server's message.
    r = fathom(env, "models", "alias", "set", name, "production", "1", "--reason", "first from the CLI")
    assert f"{name}@production -> 1" in r.stderr
    r = fathom(env, "models", "alias", "rollback", name, "production", "--reason", "no", ok=False)
    assert r.returncode == 1 and "409" in r.stderr

    # An evaluation of the version against itself by two references, on the training set.
    r = fathom(env, "evaluations", "run", job["model_id"], f"{name}@production", "--dataset", dataset, "--set", set_id)
    evaluation = r.stdout.strip().splitlines()[0]
    assert "f1_score" in r.stderr and "+0.000" in r.stderr  # the same model: no difference
    assert "f1_score" in fathom(env, "evaluations", "show", evaluation).stderr
    shutil.rmtree(folder)


def test_speech_commands_create_upload_and_transcribe(env, tmp_path):
    data = tmp_path / "pairs"
    data.mkdir()
    for i in range(2):
        wave, text = make_utterance(utterance_seed(7300, i))
        (data / f"u{i}.wav").write_bytes(encode_audio(wave, 16_000, "wav"))
        (data / f"u{i}.txt").write_text(text)
    model_id = fathom(env, "stt", "models", "create", "cli-speech", "--base-model", "medical").stdout.strip()
    r = fathom(env, "stt", "models", "upload-data", model_id, str(data), "--type", "test")
    assert "uploaded 2 test pairs" in r.stderr
    (data / "lonely.wav").write_bytes((data / "u0.wav").read_bytes())
    r = fathom(env, "stt", "models", "upload-data", model_id, str(data), ok=False)
    assert r.returncode == 1 and "no transcript beside" in r.stderr
    r = fathom(env, "stt", "transcribe", "general", str(data / "u0.wav"), str(data / "u1.wav"))
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all("\t" in line and line.split("\t", 1)[1].strip() for line in lines)
    answer = json.loads(fathom(env, "stt", "transcribe", "general", str(data / "u0.wav"), "--json").stdout)
    assert answer["words"] and answer["duration"] > 0
    started = time.monotonic()
    r = fathom(env, "stt", "transcribe", "custom_model_999999", str(data / "u0.wav"), ok=False)
    assert r.returncode == 1 and "404" in r.stderr and time.monotonic() - started < 60
