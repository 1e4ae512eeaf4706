"""Uploading a folder to a dataset: ``fathom datasets upload`` against the vendor page's presigned loop.

The same files (synthetic clips written to a folder once) go into two fresh datasets of a real
local Fathom, in one run: first the raw loop the API page shows (upload-url, the presigned
POST, confirm, one file after another, with ``requests``), then the CLI through its installed
entry point (parallel uploads, one progress bar). files/s and MB/s of each, and their ratio.
Prints a table and writes bench/results/cli_upload.json.

    python bench/cli_upload.py [--files 64] [--clip-s 20] [--workers 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, start_local_platform, write_results  # noqa: E402

HEADERS = ["uploader", "files", "MB", "wall s", "files/s", "MB/s", "x raw loop"]


def raw_loop(base_url: str, key: str, dataset_id: str, files: list[Path]) -> None:
    """The presigned-upload loop of the API page, one file at a time."""
    import requests

    headers = {"X-API-Key": key}
    for path in files:
        data = path.read_bytes()
        info = requests.post(f"{base_url}/api/v1/datasets/{dataset_id}/audio/upload-url", headers=headers, timeout=60,
                             json={"filename": path.name, "content_type": "audio/wav", "file_size": len(data)}).json()
        up = requests.post(info["upload_url"], data=info["fields"], files={"file": (path.name, data)}, timeout=600)
        up.raise_for_status()
        requests.post(f"{base_url}/api/v1/datasets/{dataset_id}/audio/confirm", headers=headers, timeout=60,
                      json={"audio_id": info["audio_id"]}).raise_for_status()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=64)
    p.add_argument("--clip-s", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()

    from ray import serve

    from data_pipelines.audio import encode_audio
    from data_pipelines.synth import make_clip
    from serve_app.app import APP_NAME, AppArgs, build_app
    from tests.factories import Client, wait_for

    local = start_local_platform(num_cpus=(os.cpu_count() or 2) + 2)  # room for Ray Data beside the replicas
    serve.run(build_app(AppArgs(settings=local.overrides)), name=APP_NAME, route_prefix="/")
    c = Client(local.base_url, local.key, org_id=local.organization_id)
    folder = Path(tempfile.mkdtemp(prefix="fathom-upload-"))
    for i in range(args.files):
        (folder / f"call_{i:03d}.wav").write_bytes(encode_audio(make_clip(30_000 + i, duration_s=args.clip_s).waveform, 16_000, "wav"))
    files = sorted(folder.glob("*.wav"))
    megabytes = sum(f.stat().st_size for f in files) / 1e6

    def dataset() -> str:
        return c.post("/api/v1/datasets", json={"name": f"bench-{time.monotonic_ns()}", "artifact_types": [{"name": "glitch"}]}).json()["id"]

    rows, result = [], {"files": args.files, "clip_s": args.clip_s, "megabytes": round(megabytes, 2), "workers": args.workers}
    raw_ds = dataset()
    t0 = time.perf_counter()
    raw_loop(local.base_url, local.key, raw_ds, files)
    raw_s = time.perf_counter() - t0

    # Its preprocessing finishes first: each uploader then shares the machine only with its own files' preprocessing.
    wait_for(lambda: c.get(f"/api/v1/datasets/{raw_ds}/audio", params={"page_size": 1, "processing_status": "ready"}).json()["total"]
             == args.files, timeout=1800, interval=1, what="raw loop's files preprocessed")
    env = {**os.environ, "FATHOM_URL": local.base_url, "FATHOM_API_KEY": local.key, "NO_COLOR": "1"}
    cli_ds = dataset()
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "fathom"), "datasets", "upload", cli_ds, str(folder), "--workers", str(args.workers)],
                   env=env, check=True, capture_output=True)
    cli_s = time.perf_counter() - t0
    for ds in (raw_ds, cli_ds):
        got = c.get(f"/api/v1/datasets/{ds}/audio", params={"page_size": 1}).json()["total"]
        assert got == args.files, (ds, got)

    for name, wall in (("raw presigned loop", raw_s), (f"fathom datasets upload ({args.workers} workers)", cli_s)):
        rows.append([name, args.files, round(megabytes, 1), round(wall, 2), round(args.files / wall, 2), round(megabytes / wall, 2),
                     round(raw_s / wall, 2)])
    result.update(raw_wall_s=round(raw_s, 3), cli_wall_s=round(cli_s, 3), raw_files_per_s=round(args.files / raw_s, 2),
                  cli_files_per_s=round(args.files / cli_s, 2), cli_speedup=round(raw_s / cli_s, 2))
    print_table(HEADERS, rows)
    print(f"wrote {write_results('cli_upload', result)}")


if __name__ == "__main__":
    main()
