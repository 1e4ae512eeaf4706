"""Train an artifact detector: ``python -m train_jobs.detector``.

Launched by ``POST /api/v1/training-jobs`` (``--job-id``) or by hand::

    ray job submit --working-dir . -- python -m train_jobs.detector \
        --dataset-id D --annotation-set-id A --artifact-types glitch,long_pause --epochs 20

Either way it records the job and trains with Ray Train (DDP over ``num_workers``, GPUs
when present, a checkpoint every epoch, restarts from the latest checkpoint after a worker
failure): Ray Data hands the workers the file list, each reads and decodes its share and
augments it afresh each epoch (``train_jobs.detector_data``). It then evaluates event-based
on the clean validation files and registers the model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from dataclasses import asdict
from typing import Any

import ray

from cluster.blob_keys import detector_checkpoint_key, training_storage_key
from cluster.blobs import make_blob_store
from cluster.db import init_schema, session_scope, signing_secret
from cluster.gpus import use_gpu
from cluster.launcher import current_submission_id
from cluster.tables import Annotation, AudioFile, Dataset, DetectorModel, TrainingJob, new_id
from cluster.training import (
    JobCancelled,
    TrainingRefused,
    complete_with_model,
    create_detector_training,
    fail_job,
    mark_running,
    report_progress,
)
from data_pipelines.events import Event
from data_pipelines.features import FEATURE_VERSION, compute_features, feature_count
from schemas.settings import Settings
from schemas.training import TrainingConfig
from train_jobs.detector_data import BlobAudio, events_of, file_rows, with_audio
from train_jobs.detection import evaluate_detector
from train_jobs.detector_loop import checkpoint_bytes, fit_detector
from train_jobs.models.detector import DetectorDims, load_checkpoint
from train_jobs.progress import ProgressCallback
from train_jobs.windows import WindowSpec

log = logging.getLogger("fathom.train.detector")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train_jobs.detector", description=__doc__.split("\n")[0])
    p.add_argument("--job-id", help="train an existing queued job record (API launches)")
    p.add_argument("--dataset-id")
    p.add_argument("--annotation-set-id")
    p.add_argument("--artifact-types", help="comma-separated; default: every type of the dataset")
    for name, typ in (("epochs", int), ("validation-split", float), ("learning-rate", float), ("batch-size", int),
                      ("chunk-size-ms", int), ("stride-ms", int), ("num-workers", int), ("seed", int)):
        p.add_argument(f"--{name}", type=typ)
    p.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--augmentation", type=json.loads,
        help='JSON of schemas.augmentation.DetectorAugmentation, e.g. \'{"enabled": false}\'; default: on',
    )
    args = p.parse_args(argv)
    if not args.job_id and not (args.dataset_id and args.annotation_set_id):
        p.error("give --job-id, or --dataset-id and --annotation-set-id")
    return args


def create_job_record(settings: Settings, args: argparse.Namespace) -> str:
    """A standalone submission registers its job through the API's own checks (cluster.training)."""
    with session_scope(settings.database_url) as s:
        dataset = s.get(Dataset, args.dataset_id)
        if dataset is None:
            raise SystemExit(f"dataset {args.dataset_id} not found")
        types = args.artifact_types.split(",") if args.artifact_types else [t["name"] for t in dataset.artifact_types]
        overrides = {k: v for k, v in vars(args).items() if v is not None and k not in ("job_id", "dataset_id", "annotation_set_id", "artifact_types")}
        config = TrainingConfig(artifact_types=types, **overrides)
        try:
            job = create_detector_training(s, settings, dataset.organization_id, dataset.id, args.annotation_set_id, config)
        except TrainingRefused as e:
            raise SystemExit(f"training refused ({e.status_code}): {e}") from e
        return job.id


def split_files(file_ids: list[str], validation_split: float, seed: int) -> tuple[list[str], list[str]]:
    """File-level split (windows of one file never straddle train and validation)."""
    ids = sorted(file_ids)
    random.Random(seed).shuffle(ids)
    n_val = min(max(1, round(len(ids) * validation_split)), len(ids) - 1)
    return ids[n_val:], ids[:n_val]


def load_job_inputs(settings: Settings, job_id: str) -> dict[str, Any]:
    with session_scope(settings.database_url) as s:
        job = s.get(TrainingJob, job_id)
        config = TrainingConfig.model_validate(job.config)
        files = s.query(AudioFile).filter(AudioFile.dataset_id == job.dataset_id, AudioFile.processing_status == "ready").all()
        anns = s.query(Annotation).filter(Annotation.annotation_set_id == job.annotation_set_id).all()
        events: dict[str, list[Event]] = {f.id: [] for f in files}
        for a in anns:
            if a.artifact_type in config.artifact_types and a.audio_file_id in events:
                events[a.audio_file_id].append(Event(a.artifact_type, int(a.start_ms), int(a.end_ms)))
        return {
            "job": {"organization_id": job.organization_id, "dataset_id": job.dataset_id},
            "config": config,
            "blob_keys": {f.id: f.blob_key for f in files},
            "durations_ms": {f.id: int(f.duration_ms or 0) for f in files},
            "events": events,
        }


def make_loop_config(config: TrainingConfig, spec: WindowSpec, *, feature_version: int = FEATURE_VERSION) -> dict[str, Any]:
    """The Ray Train loop's config for a job's training options (benchmarks use it too)."""
    aug = config.augmentation
    return {
        "epochs": config.epochs,
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "dims": asdict(DetectorDims(n_features=feature_count(feature_version), n_classes=len(config.artifact_types))),
        "artifact_types": list(config.artifact_types),
        "window": asdict(spec),
        "seed": config.seed,
        "feature_version": feature_version,
        "augmentation": aug.model_dump(mode="json") if aug.enabled else None,
    }


def evaluation_summary(metrics: dict[str, Any]) -> str:
    """One log line of the event-based validation figures, overall and per type."""
    per_type = ", ".join(f"{name} {m['f1_score']:.3f} ({m['support']} events)" for name, m in metrics["per_class"].items())
    return (
        f"evaluation: event F1 {metrics['f1_score']:.3f} (precision {metrics['precision']:.3f}, "
        f"recall {metrics['recall']:.3f}); per type: {per_type}"
    )


def train(settings: Settings, job_id: str) -> str:
    url = settings.database_url
    blobs = make_blob_store(settings, secret=init_schema(url).signing_secret.encode())
    inputs = load_job_inputs(settings, job_id)
    config: TrainingConfig = inputs["config"]
    types = list(config.artifact_types)
    train_ids, val_ids = split_files(list(inputs["blob_keys"]), config.validation_split, config.seed)
    minutes = sum(inputs["durations_ms"][i] for i in train_ids) / 60000
    report_progress(
        url,
        job_id,
        progress=1.0,
        message=f"preprocessing: {len(train_ids)} training files ({minutes:.1f} min of audio), {len(val_ids)} validation "
        f"files; types {', '.join(types)}; windows of {config.chunk_size_ms} ms every {config.stride_ms} ms",
    )

    blob_keys, events = inputs["blob_keys"], inputs["events"]
    spec = WindowSpec.from_ms(config.chunk_size_ms, config.stride_ms)
    read_audio = BlobAudio(settings, signing_secret(url))
    val_rows = file_rows([(i, blob_keys[i], events[i]) for i in val_ids])
    train_files = ray.data.from_items(file_rows([(i, blob_keys[i], events[i]) for i in train_ids]))
    val_files = ray.data.from_items(val_rows)
    aug = config.augmentation
    num_workers = config.num_workers if config.num_workers is not None else settings.train_num_workers
    gpu = use_gpu(settings, config.use_gpu)
    report_progress(
        url,
        job_id,
        progress=5.0,
        message=f"training {config.epochs} epochs on {max(num_workers, 1)} Ray Train worker(s), {'GPU' if gpu else 'CPU'}; "
        + ("augmentation on: each epoch draws new noise, band, gain and codec per file" if aug.enabled else "augmentation off"),
    )

    result = fit_detector(
        train_files,
        val_files,
        config=make_loop_config(config, spec),
        read_audio=read_audio,
        num_workers=num_workers,
        use_gpu=gpu,
        storage_path=blobs.arrow_path(training_storage_key(job_id)),
        storage_filesystem=blobs.arrow_filesystem(),
        run_name=f"detector-{job_id}",
        callbacks=[ProgressCallback(url, job_id, epochs=config.epochs)],
    )
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    model_bytes = checkpoint_bytes(result.checkpoint)

    report_progress(url, job_id, progress=92.0, message=f"evaluating on {len(val_ids)} validation files")
    model, meta = load_checkpoint(model_bytes)
    val_files = [
        (
            compute_features(r["waveform"], version=meta.feature_version),
            inputs["durations_ms"][r["audio_id"]],  # the source's duration, as inference reports it
            events_of(r["events"]),
        )
        for r in with_audio(val_rows, read_audio)  # decoded again here: the workers' copies died with them
    ]
    eval_metrics = evaluate_detector(model, meta, val_files)
    report_progress(url, job_id, progress=96.0, message=evaluation_summary(eval_metrics))

    model_id = new_id()
    checkpoint_key = detector_checkpoint_key(model_id)
    blobs.put_bytes(checkpoint_key, model_bytes)
    final_metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    final_metrics.update({"event_f1": eval_metrics["f1_score"], "event_precision": eval_metrics["precision"], "event_recall": eval_metrics["recall"]})
    row = DetectorModel(
        id=model_id,
        organization_id=inputs["job"]["organization_id"],
        training_job_id=job_id,
        artifact_types=types,
        eval_metrics=eval_metrics,
        config=config.model_dump(),
        checkpoint_key=checkpoint_key,
    )
    try:
        return complete_with_model(url, job_id, row, final_metrics)
    except JobCancelled:
        blobs.delete(checkpoint_key)  # never leave a model file behind for a job that did not complete
        raise


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    settings = Settings()
    init_schema(settings.database_url)
    job_id = args.job_id or create_job_record(settings, args)
    ray.init(address=settings.ray_address or os.environ.get("RAY_ADDRESS") or "auto", log_to_driver=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        mark_running(settings.database_url, job_id, ray_job_id=current_submission_id(settings))
        model_id = train(settings, job_id)
    except JobCancelled as e:
        log.info("%s", e)
        return 0
    except BaseException as e:
        log.exception("training job %s failed", job_id)
        fail_job(settings.database_url, job_id, f"{type(e).__name__}: {e}")
        return 1
    print(f"training job {job_id} completed: model {model_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
