"""Speech-to-text throughput through HTTP vs the in-process ceiling; batching on vs off.

Clients send synthetic English utterances to ``POST /api/v3/stt`` (the shipped ``general``
model, beam search) on a real local Fathom (Ray, Serve, SQLite, local blobs). Reported per
concurrency level and batching mode: RTFx (audio seconds per wall second) and p50/p99
request latency. The ceiling is decode + features + model + beam search on the same audio
in one process with one Transcriber replica's thread count (1), in batches of the
replica's size. The per-key rate limit is lifted for the run. Prints a table and writes
bench/results/stt_http.json.

    python bench/stt_http.py [--utterances 96] [--levels 1,8,32]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import sys
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, start_local_platform, wait_for_idle_cpus, write_results  # noqa: E402

BATCH = 16  # Transcriber max_batch_size when batching is on
HEADERS = ["batching", "concurrency", "requests", "RTFx", "p50 s", "p99 s"]


def make_audio(n: int) -> tuple[list[bytes], list[float]]:
    from data_pipelines.audio import encode_audio
    from data_pipelines.stt_corpus import make_utterance, utterance_seed

    waves = [make_utterance(utterance_seed(900, i))[0] for i in range(min(n, 32))]
    waves = [waves[i % len(waves)] for i in range(n)]
    return [encode_audio(w, 16_000, "wav") for w in waves], [w.size / 16_000 for w in waves]


def ceiling(audio: list[bytes]) -> float:
    import torch

    from data_pipelines.audio import decode_audio
    from train_jobs.base_models import load_base_model
    from train_jobs.stt_decoding import transcribe_batch

    torch.set_num_threads(1)
    model, meta = load_base_model("general")
    t0 = time.perf_counter()
    seconds = 0.0
    for b in range(0, len(audio), BATCH):
        waves = [decode_audio(a).waveform for a in audio[b : b + BATCH]]
        transcribe_batch(model, meta, waves)
        seconds += sum(w.size for w in waves) / 16_000
    return seconds / (time.perf_counter() - t0)


def run_level(base: str, key: str, audio: list[bytes], seconds: list[float], concurrency: int) -> dict:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency * 2))

    def one(data: bytes) -> float:
        t0 = time.perf_counter()
        r = session.post(
            f"{base}/api/v3/stt", data={"model": "general", "language": "en"}, files={"audio_file": ("u.wav", data)}, timeout=600
        )
        assert r.status_code == 200, r.text
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, audio))
    wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": len(audio),
        "rtfx": sum(seconds) / wall,
        "p50_s": float(np.percentile(latencies, 50)),
        "p99_s": float(np.percentile(latencies, 99)),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--utterances", type=int, default=96)
    p.add_argument("--levels", default="1,8,32")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    import ray
    from ray import serve

    from serve_app.app import APP_NAME, AppArgs, build_app

    local = start_local_platform(stt_rate_transcription="1000000/minute")  # measure throughput, not the limit
    base, key, overrides = local.base_url, local.key, local.overrides
    audio, seconds = make_audio(args.utterances)

    rows, results = [], {"runs": [], "audio_seconds": sum(seconds), "utterances": len(audio)}
    modes = (("on", {"max_batch_size": BATCH, "batch_wait_timeout_s": 0.02}), ("off", {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}))
    for batching, user_config in modes:
        serve.run(build_app(AppArgs(settings=overrides, transcriber_user_config=user_config)), name=APP_NAME, route_prefix="/")
        run_level(base, key, audio[:4], seconds[:4], 4)  # warm-up: model load, connections
        for c in levels:
            wait_for_idle_cpus(0.8, timeout_s=30)
            r = run_level(base, key, audio, seconds, c) | {"batching": batching}
            results["runs"].append(r)
            rows.append([batching, c, r["requests"], r["rtfx"], r["p50_s"], r["p99_s"]])
            print_table(HEADERS, rows[-1:])
    serve.shutdown()
    wait_for_idle_cpus(0.8, timeout_s=30)
    ceil = ceiling(audio[: min(len(audio), 48)])
    top = max(levels)
    on = next(r for r in results["runs"] if r["batching"] == "on" and r["concurrency"] == top)
    off = next(r for r in results["runs"] if r["batching"] == "off" and r["concurrency"] == top)
    best_http = max(r["rtfx"] for r in results["runs"])
    results.update(
        ceiling_rtfx=ceil,
        http_over_ceiling=best_http / ceil,
        batched_over_unbatched_at_top=on["rtfx"] / off["rtfx"],
        gpu=bool(ray.cluster_resources().get("GPU")),
    )
    print()
    print_table(HEADERS, rows)
    print(f"\nin-process ceiling (1 thread, batches of {BATCH}): RTFx {ceil:.1f}; best HTTP / ceiling = {results['http_over_ceiling']:.2f}")
    print(f"batched / unbatched at concurrency {top}: {results['batched_over_unbatched_at_top']:.2f}x")
    print(f"wrote {write_results('stt_http', results)}")
    ray.shutdown()


if __name__ == "__main__":
    main()
