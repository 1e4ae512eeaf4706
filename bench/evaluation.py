"""An evaluation of 2 detectors over 200 annotated files, through the API on a real local Fathom.

The files are synthetic clips uploaded to a dataset (Ray Data preprocessing) and annotated with
their own events; the two detectors have random weights (throughput does not depend on what
they learned). Measured from POST /api/v1/evaluations to ``completed``: files/s and (model,
file) rows/s, and where the time goes, from the evaluation's own timings: prediction (the
Detector deployment, summed over concurrent calls), per-file scoring (matching at the
operating point and at the 9 sweep thresholds, segments) and the summary (sums, sweep, bootstrap).
Prints a table and writes bench/results/evaluation.json.

    python bench/evaluation.py [--files 200] [--clip-s 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, start_local_platform, write_results  # noqa: E402

HEADERS = ["files", "models", "rows", "wall s", "files/s", "rows/s", "scoring share", "summary share", "predict+write share", "predict mean s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--clip-s", type=float, default=10.0)
    args = p.parse_args()

    from ray import serve

    from data_pipelines.audio import encode_audio
    from data_pipelines.synth import ARTIFACT_TYPES, make_clip
    from serve_app.app import APP_NAME, AppArgs, build_app
    from tests.factories import Client, annotate, register_detector, upload_dataset_audio, wait_for

    # The replicas hold a CPU each; two more logical CPUs let Ray Data preprocess the uploads beside them.
    local = start_local_platform(num_cpus=(os.cpu_count() or 2) + 2)
    serve.run(build_app(AppArgs(settings=local.overrides)), name=APP_NAME, route_prefix="/")
    c = Client(local.base_url, local.key, org_id=local.organization_id)
    types = list(ARTIFACT_TYPES)
    ds = c.post("/api/v1/datasets", json={"name": "bench", "artifact_types": [{"name": t} for t in types]}).json()["id"]
    truth = {}
    for i in range(args.files):
        clip = make_clip(20_000 + i, duration_s=args.clip_s)
        truth[upload_dataset_audio(c, ds, encode_audio(clip.waveform, clip.sample_rate, "wav"), f"clip_{i}.wav")] = clip.events

    def ready():
        body = c.get(f"/api/v1/datasets/{ds}/audio", params={"page_size": 1, "processing_status": "ready"}).json()
        return body["total"] == args.files or None

    wait_for(ready, timeout=3600, interval=2, what="dataset audio ready")
    set_id = annotate(c, ds, truth, publish=True)
    models = [register_detector(local.settings, local.organization_id, types) for _ in range(2)]

    t0 = time.perf_counter()
    r = c.post("/api/v1/evaluations", json={"models": models, "data": {"dataset_id": ds, "annotation_set_id": set_id}})
    assert r.status_code == 201, r.text

    def done():
        e = c.get(f"/api/v1/evaluations/{r.json()['id']}").json()
        return e if e["status"] in ("completed", "failed") else None

    e = wait_for(done, timeout=3600, interval=0.5, what="evaluation")
    wall = time.perf_counter() - t0
    assert e["status"] == "completed", e
    t = e["results"]["timings"]
    rows = args.files * len(models)
    run = t["run_s"]
    result = {
        "files": args.files, "models": len(models), "rows": rows, "clip_s": args.clip_s, "wall_s": round(wall, 2),
        "files_per_s": round(args.files / wall, 2), "rows_per_s": round(rows / wall, 2),
        # scoring and the summary run one at a time on the Dispatcher, so their shares of the run are exact;
        # the rest is waiting on the Detector (predictions overlap) and writing rows
        "scoring_share": round(t["score_s"] / run, 3),
        "summary_share": round(t["summary_s"] / run, 3),
        "predict_and_write_share": round(1 - (t["score_s"] + t["summary_s"]) / run, 3),
        "mean_prediction_s": round(t["predict_s"] / rows, 3),
        "timings": t,
    }
    print_table(HEADERS, [[args.files, len(models), rows, result["wall_s"], result["files_per_s"], result["rows_per_s"],
                           result["scoring_share"], result["summary_share"], result["predict_and_write_share"], result["mean_prediction_s"]]])
    print(f"wrote {write_results('evaluation', result)}")


if __name__ == "__main__":
    main()
