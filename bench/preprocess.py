"""Preprocessing throughput: one Ray Data run against a plain single-process loop.

Both modes run the same per-file code (``normalize_row`` then ``embed_row`` from
``data_pipelines.preprocess``: read the upload, decode + downmix + resample to 16 kHz, record
metadata, compute features, write the shard, mark the file ready) over the same uploads,
each on fresh AudioFile rows in a real SQLite database and local blob store. The loop runs
twice, with torch's intra-op pool at 1 thread and at its default (one per core); the Ray
tasks pin one thread each, as in production. The ratio is against the faster loop.

The corpus (synthetic speech with artifacts, stereo, alternating WAV/FLAC) is generated once
and cached. Each mode gets a warm-up first (worker start-up and first-call costs are
reported separately), then ``--repeats`` timed runs in alternating order, each started once
the host's CPUs are idle (``--min-idle``: other tenants' load skews a 2-core host badly); the
best run of each mode is compared.

    python -m bench.preprocess [--files 64] [--seconds 15] [--sample-rate 44100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.common import print_table, wait_for_idle_cpus, write_results

STEREO_DELAY_SAMPLES = 7  # right channel = left delayed and attenuated: a real stereo image
STEREO_GAIN = 0.8
FORMATS = ("wav", "flac")


@dataclass(frozen=True)
class Run:
    mode: str  # "loop_<n>_thread(s)" | "ray_data"
    repeat: int
    wall_s: float
    files: int
    audio_s: float
    idle_before: float | None  # host CPU idle fraction just before the run (0..1), if measured

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_s / self.wall_s


def build_corpus(directory: Path, n_files: int, seconds: float, sample_rate: int) -> list[Path]:
    """``n_files`` encoded stereo clips under ``directory`` (kept between runs)."""
    from data_pipelines.audio import encode_audio
    from data_pipelines.synth import make_clip

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        fmt = FORMATS[i % len(FORMATS)]
        path = directory / f"clip{i:04d}-{seconds:g}s-{sample_rate}.{fmt}"
        if not path.exists():
            mono = make_clip(i, duration_s=seconds, sample_rate=sample_rate).waveform
            right = STEREO_GAIN * np.concatenate([np.zeros(STEREO_DELAY_SAMPLES, np.float32), mono[:-STEREO_DELAY_SAMPLES]])
            tmp = path.with_suffix(".part")
            tmp.write_bytes(encode_audio(np.stack([mono, right], axis=1), sample_rate, fmt))
            tmp.replace(path)
        paths.append(path)
    return paths


class Bench:
    """A scratch database + blob store holding the corpus once; fresh file rows per run."""

    def __init__(self, root: Path, corpus: Sequence[Path]) -> None:
        from cluster.blobs import make_blob_store
        from cluster.db import init_schema, session_scope
        from cluster.tables import Organization
        from schemas.settings import Settings

        self.settings = Settings(data_dir=root, database_url=f"sqlite:///{root / 'fathom.db'}")
        self.secret = init_schema(self.settings.database_url).signing_secret.encode()
        self.blobs = make_blob_store(self.settings, secret=self.secret)
        with session_scope(self.settings.database_url) as s:
            org = Organization(name="bench")
            s.add(org)
            s.flush()
            self.org_id = org.id
        self.uploads = []
        for path in corpus:
            key = f"uploads/{path.name}"
            self.blobs.put_bytes(key, path.read_bytes())
            self.uploads.append((key, path.name))

    def new_files(self, n: int) -> list[str]:
        """``n`` AudioFile rows (uploads reused round-robin) in a new dataset, claimed (normalizing)."""
        from cluster.db import session_scope
        from cluster.tables import AudioFile, Dataset

        with session_scope(self.settings.database_url) as s:
            dataset = Dataset(organization_id=self.org_id, name=f"bench-{uuid.uuid4().hex[:8]}")
            s.add(dataset)
            s.flush()
            ids = []
            for i in range(n):
                key, name = self.uploads[i % len(self.uploads)]
                row = AudioFile(
                    organization_id=self.org_id, dataset_id=dataset.id, original_filename=name,
                    content_type="application/octet-stream", declared_size=self.blobs.size(key) or 0,
                    blob_key=key, processing_status="normalizing", attempts=1,
                )
                s.add(row)
                s.flush()
                ids.append(row.id)
        return ids

    def loop(self, ids: Sequence[str]) -> dict[str, str]:
        """The plain baseline: every file in turn, in this process."""
        from cluster.db import session_scope
        from cluster.tables import AudioFile
        from data_pipelines.preprocess import embed_row, normalize_row

        with session_scope(self.settings.database_url) as s:
            rows = [{"id": f.id, "blob_key": f.blob_key, "dataset_id": f.dataset_id} for f in (s.get(AudioFile, i) for i in ids)]
        kw = {"settings": self.settings, "secret": self.secret}
        return {r["id"]: embed_row(normalize_row(r, **kw), **kw)["status"] for r in rows}

    def ray_data(self, ids: Sequence[str]) -> dict[str, str]:
        from data_pipelines.preprocess import preprocess_audio_files

        return preprocess_audio_files(self.settings, ids)

    def audio_seconds(self, ids: Sequence[str]) -> float:
        from sqlalchemy import func, select

        from cluster.db import session_scope
        from cluster.tables import AudioFile

        with session_scope(self.settings.database_url) as s:
            total_ms = s.scalar(select(func.sum(AudioFile.duration_ms)).where(AudioFile.id.in_(list(ids))))
        return (total_ms or 0) / 1000


def timed(
    bench: Bench, mode: str, fn: Callable[[Sequence[str]], dict[str, str]], n: int, repeat: int, min_idle: float
) -> Run:
    ids = bench.new_files(n)
    idle = wait_for_idle_cpus(min_idle) if min_idle > 0 else None
    start = time.perf_counter()
    statuses = fn(ids)
    wall = time.perf_counter() - start
    not_ready = {s for s in statuses.values() if s != "ready"}
    if not_ready or len(statuses) != n:
        raise RuntimeError(f"{mode} run {repeat}: expected {n} ready files, got statuses {sorted(not_ready)}")
    return Run(mode, repeat, wall, n, bench.audio_seconds(ids), idle)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0, help="clip length (s)")
    parser.add_argument("--sample-rate", type=int, default=44_100, help="source rate (Hz)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode")
    parser.add_argument(
        "--min-idle", type=float, default=0.9,
        help="wait (up to 2 min) before each run until the host's CPUs are this idle; 0 disables",
    )
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="Ray logical CPUs")
    parser.add_argument("--corpus-dir", type=Path, default=Path(tempfile.gettempdir()) / "fathom-bench-preprocess")
    args = parser.parse_args(argv)

    import ray
    import torch

    print(f"corpus: {args.files} x {args.seconds:g} s stereo {args.sample_rate} Hz {'/'.join(FORMATS)} in {args.corpus_dir}")
    corpus = build_corpus(args.corpus_dir, args.files, args.seconds, args.sample_rate)
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    default_threads = torch.get_num_threads()
    load_before = os.getloadavg()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="fathom-bench-") as root:
        bench = Bench(Path(root), corpus)
        modes = {
            "loop_1_thread": with_torch_threads(1, bench.loop),
            f"loop_{default_threads}_threads": with_torch_threads(default_threads, bench.loop),
            "ray_data": bench.ray_data,
        }
        warm_n = min(args.files, 2 * args.cpus)
        warmup = [timed(bench, mode, fn, warm_n, 0, 0.0) for mode, fn in modes.items()]
        order = list(modes.items())
        for repeat in range(1, args.repeats + 1):
            for mode, fn in order if repeat % 2 else order[::-1]:
                runs.append(timed(bench, mode, fn, args.files, repeat, args.min_idle))
    load_after = os.getloadavg()
    ray.shutdown()

    best = {mode: max((r for r in runs if r.mode == mode), key=lambda r: r.files_per_s) for mode in modes}
    best_loop = max((r for m, r in best.items() if m.startswith("loop")), key=lambda r: r.files_per_s)
    ratio = best["ray_data"].files_per_s / best_loop.files_per_s
    print_table(
        ["mode", "run", "wall s", "files/s", "audio s/s", "idle before"],
        [[r.mode, r.repeat or "warm-up", r.wall_s, r.files_per_s, r.audio_s_per_s, r.idle_before] for r in warmup + runs],
    )
    print(
        f"best ray_data / best loop ({best_loop.mode}): {ratio:.2f}x files/s "
        f"(1-min load average before {load_before[0]:.1f}, after {load_after[0]:.1f})"
    )
    path = write_results(
        "preprocess",
        {
            "config": {
                "files": args.files, "seconds": args.seconds, "sample_rate": args.sample_rate, "channels": 2,
                "formats": list(FORMATS), "ray_cpus": args.cpus, "repeats": args.repeats, "min_idle": args.min_idle,
            },
            "warmup": [summary(r) for r in warmup],
            "runs": [summary(r) for r in runs],
            "best": {m: summary(r) for m, r in best.items()},
            "best_loop_mode": best_loop.mode,
            "ratio_files_per_s": ratio,
            "load_average_1m": {"before": load_before[0], "after": load_after[0]},
        },
    )
    print(f"wrote {path}")


def with_torch_threads(n: int, fn: Callable[[Sequence[str]], dict[str, str]]) -> Callable[[Sequence[str]], dict[str, str]]:
    """``fn`` run with torch's intra-op pool at ``n`` threads (restored afterwards)."""
    import torch

    def run(ids: Sequence[str]) -> dict[str, str]:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn(ids)
        finally:
            torch.set_num_threads(before)

    return run


def summary(run: Run) -> dict[str, object]:
    return asdict(run) | {"files_per_s": run.files_per_s, "audio_s_per_s": run.audio_s_per_s}


if __name__ == "__main__":
    main()
