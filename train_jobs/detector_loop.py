"""Ray Train (V2) loop for the frame-level artifact detector.

Each worker reads its shard of the ``"train"`` and ``"val"`` files (rows ``{"audio_id",
"events"}`` with their ``"waveform"`` or a ``"blob_key"`` the worker reads itself), keeps
both in memory, fits the feature normalisation on the training files as uploaded (sums
all-reduced over the ranks), augments, featurises and windows the training files afresh
every epoch, and validates on the validation files' clean windows. It trains a DDP-wrapped ``FrameDetector`` with class-weighted BCE on
the chunk frames only (files yield unequal window counts per rank: DDP's ``Join`` covers
the ranks that run out first),
and reports once per epoch from every rank. NaN targets (chunk frames past the end of
a file) count in neither the loss nor the frame scores. Rank 0 attaches a checkpoint directory
holding the self-contained model bytes plus the optimizer state, so a restarted or
re-launched run (same ``storage_path`` + ``name``) continues at the next epoch.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn

from data_pipelines.features import feature_count
from data_pipelines.augment import conditions_for
from schemas.augmentation import DetectorAugmentation
from train_jobs.detector_data import first_read_sums, training_batches, validation_batches, with_audio
from train_jobs.progress import collect_reports_promptly
from train_jobs.shards import MemoryShard, bare_module, joined, rank_share, whole_datasets_in_order
from train_jobs.models.detector import DetectorDims, FrameDetector, load_checkpoint, save_checkpoint, stats_from_sums
from train_jobs.windows import WindowSpec

log = logging.getLogger("fathom.train.detector")

MODEL_FILE = "detector.pt"  # save_checkpoint bytes inside a Ray checkpoint directory
TRAIN_STATE_FILE = "train_state.pt"  # {"epoch", "optimizer", "pos_weight"}
CHECKPOINTS_KEPT = 2  # latest checkpoints retained in storage
WEIGHT_DECAY = 1e-2  # AdamW
GRAD_CLIP_NORM = 1.0  # global L2 norm; keeps the GRU stable at high learning rates
MIN_LR_FRACTION = 0.05  # cosine schedule floor, as a fraction of learning_rate
# Positive frames weigh (negative / positive frames) ** POS_WEIGHT_POWER, capped: rare types
# (a glitch is 1 % of frames) still count, without trading most of their precision for recall.
POS_WEIGHT_POWER = 0.25
MAX_POS_WEIGHT = 50.0
PREDICT_THRESHOLD = 0.5  # frame probability above which a frame counts as detected

REQUIRED_CONFIG_KEYS = (
    "epochs", "learning_rate", "batch_size", "dims", "artifact_types",
    "window", "seed", "feature_version", "augmentation",
)  # fmt: skip; optional: "pos_weight_power" (default POS_WEIGHT_POWER)


def validate_config(config: Mapping[str, Any]) -> tuple[DetectorDims, WindowSpec]:
    """Checks the loop config on the driver before any worker starts."""
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"detector train config lacks {missing}; required keys are {list(REQUIRED_CONFIG_KEYS)}")
    try:
        dims = DetectorDims(**config["dims"])
        window = WindowSpec(**config["window"])
    except TypeError as e:
        raise ValueError(f"bad dims or window in detector train config: {e}") from e
    if len(config["artifact_types"]) != dims.n_classes:
        raise ValueError(
            f"artifact_types {list(config['artifact_types'])} do not match dims.n_classes={dims.n_classes}"
        )
    if feature_count(int(config["feature_version"])) != dims.n_features:
        raise ValueError(f"feature set {config['feature_version']} does not have dims.n_features={dims.n_features} columns")
    if config["augmentation"] is not None:
        DetectorAugmentation.model_validate(config["augmentation"])
    if int(config["epochs"]) < 1 or int(config["batch_size"]) < 1 or float(config["learning_rate"]) <= 0:
        raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")
    return dims, window


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _epoch_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine decay by epoch (1-based) to MIN_LR_FRACTION; a function of the epoch only, so resumes match."""
    progress = (epoch - 1) / max(1, epochs - 1)
    return base_lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def _first_read(shard, artifact_types: Sequence[str], feature_version: int, device: torch.device, power: float):
    """The training files' feature mean and std, and the per-class BCE pos_weight (neg/pos) ** power in
    [1, MAX_POS_WEIGHT], over all ranks' files as uploaded (their sums all-reduced: every rank gets the same)."""
    counts, sums = first_read_sums(shard, artifact_types, feature_version)
    counts = _all_reduce_sum(torch.as_tensor(counts, dtype=torch.float64, device=device))
    sums = _all_reduce_sum(torch.as_tensor(sums, dtype=torch.float64, device=device)).cpu().numpy()
    pos = counts[0].clamp_min(1.0)
    ratio = (counts[1] - pos).clamp_min(1.0) / pos
    mean, std = stats_from_sums(sums)
    return mean, std, ratio.pow(power).clamp(1.0, MAX_POS_WEIGHT).float()


def _masked_bce(logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None) -> torch.Tensor:
    """Mean BCE-with-logits over the frames whose target is not NaN."""
    labelled = ~torch.isnan(y)
    loss = nn.functional.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(y), pos_weight=pos_weight, reduction="none"
    )
    return (loss * labelled).sum() / labelled.sum().clamp_min(1)


def _run_epoch(model, batches, *, pos_weight, window: WindowSpec, optimizer=None, n_classes: int, device):
    """One pass over ``batches``; trains when given an optimizer. Returns this rank's [loss sum, batches], TP/FP/FN [3, C]."""
    ctx, chunk = window.context_frames, window.chunk_frames
    training = optimizer is not None
    model.train(training)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, batches
    counts = torch.zeros(3, n_classes, dtype=torch.float64, device=device)  # TP, FP, FN
    for batch in batches:
        x, y = batch["x"], batch["y"]
        with torch.set_grad_enabled(training):
            logits = model(x)[:, ctx : ctx + chunk]
            loss = _masked_bce(logits, y, pos_weight)
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
        with torch.no_grad():
            labelled = ~torch.isnan(y)
            pred = (torch.sigmoid(logits) > PREDICT_THRESHOLD) & labelled
            truth = y > 0.5  # False where NaN
            counts[0] += (pred & truth).sum((0, 1)).double()
            counts[1] += (pred & ~truth).sum((0, 1)).double()
            counts[2] += (~pred & truth).sum((0, 1)).double()
            loss_sum[0] += loss.detach().double()
            loss_sum[1] += 1
    return loss_sum, counts  # this rank's: reduced by the caller, outside any Join


class _Timed:
    """Wraps an iterator, adding the seconds spent producing its items to ``seconds``."""

    def __init__(self, items):
        self._items, self.seconds = iter(items), 0.0

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        try:
            return next(self._items)
        finally:
            self.seconds += time.perf_counter() - t


def _f1(counts: torch.Tensor) -> np.ndarray:
    tp, fp, fn = counts.cpu().numpy()
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)  # no frames, none predicted: perfect


def _write_checkpoint_dir(model, optimizer, *, epoch: int, pos_weight, config: Mapping[str, Any], window) -> str:
    directory = tempfile.mkdtemp(prefix="fathom-detector-ckpt-")
    model_bytes = save_checkpoint(
        model, artifact_types=config["artifact_types"], window=window, extra={"epoch": epoch},
        feature_version=int(config["feature_version"]),
    )
    with open(os.path.join(directory, MODEL_FILE), "wb") as f:
        f.write(model_bytes)
    state = {"epoch": epoch, "optimizer": optimizer.state_dict(), "pos_weight": pos_weight.cpu()}
    torch.save(state, os.path.join(directory, TRAIN_STATE_FILE))
    return directory


def train_loop_per_worker(config: dict, read_audio: Callable[[str], np.ndarray] | None = None) -> None:
    """Per-worker loop for ``TorchTrainer``; config keys: see ``REQUIRED_CONFIG_KEYS``. ``read_audio`` reads
    the rows that name a blob instead of carrying their waveform (``detector_data.BlobAudio``)."""
    dims, window = validate_config(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")  # a no-op where set
    artifact_types: Sequence[str] = config["artifact_types"]
    epochs, batch_size = int(config["epochs"]), int(config["batch_size"])
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(int(config["seed"]))  # identical initial weights on every rank

    model = FrameDetector(dims)
    start_epoch, train_state = 1, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, MODEL_FILE), "rb") as f:
                restored, _ = load_checkpoint(f.read())
            train_state = torch.load(os.path.join(directory, TRAIN_STATE_FILE), weights_only=True)
        model.load_state_dict(restored.state_dict())
        start_epoch = int(train_state["epoch"]) + 1

    device = ray.train.torch.get_device()
    seed, feature_version = int(config["seed"]), int(config["feature_version"])
    world = ray.train.get_context().get_world_size()
    train_rows, val_rows = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    train_shard = MemoryShard(lambda: with_audio(rank_share(train_rows, rank, world), read_audio), lambda row: row["waveform"].nbytes)
    val_batches = MemoryShard(
        lambda: validation_batches(
            with_audio(rank_share(val_rows, rank, world), read_audio), batch_size=batch_size, artifact_types=artifact_types,
            spec=window, feature_version=feature_version, device=device,
        ),
        lambda batch: sum(t.nbytes for t in batch.values()),
    )
    if train_state is not None:
        pos_weight = train_state["pos_weight"].to(device)  # the normalisation came with the weights
    else:
        mean, std, pos_weight = _first_read(
            train_shard, artifact_types, feature_version, device, float(config.get("pos_weight_power", POS_WEIGHT_POWER))
        )
        model.set_normalization(mean, std)
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(config["learning_rate"]), weight_decay=WEIGHT_DECAY)
    if train_state is not None:
        optimizer.load_state_dict(train_state["optimizer"])
    aug = config["augmentation"]
    aug = DetectorAugmentation.model_validate(aug) if aug else DetectorAugmentation(enabled=False)
    conditions = conditions_for(aug) if aug.enabled else None

    if rank == 0:
        log.info("training on %s, %d torch threads per worker, %d worker(s)", device, torch.get_num_threads(), world)
    previous_dir = None
    for epoch in range(start_epoch, epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = _epoch_lr(float(config["learning_rate"]), epoch, epochs)
        common = dict(window=window, n_classes=dims.n_classes, device=device)
        train_batches = training_batches(
            train_shard, epoch=epoch, seed=seed, rank=rank, batch_size=batch_size, artifact_types=artifact_types,
            spec=window, feature_version=feature_version, conditions=conditions, device=device,
            augment_probability=aug.probability,
        )
        t_epoch = time.perf_counter()
        train_batches = _Timed(train_batches)
        with joined(model):
            train_loss, _ = _run_epoch(model, train_batches, pos_weight=pos_weight, optimizer=optimizer, **common)
        train_loss = _all_reduce_sum(train_loss)
        t_val = time.perf_counter()
        # validation loss unweighted: comparable across runs and datasets. The bare module, not DDP: ranks hold
        # unequal numbers of validation batches, and DDP's forward would broadcast buffers once per batch
        val_loss, val_counts = map(_all_reduce_sum, _run_epoch(bare_module(model), val_batches, pos_weight=None, **common))
        t_report = time.perf_counter()
        f1 = _f1(val_counts)
        metrics = {
            "epoch": epoch,
            "epochs": epochs,
            "train_loss": float(train_loss[0] / train_loss[1].clamp_min(1)),
            "val_loss": float(val_loss[0] / val_loss[1].clamp_min(1)),
            "val_frame_f1": float(f1.mean()),
            **{f"val_frame_f1_{name}": float(v) for name, v in zip(artifact_types, f1)},
        }
        directory = None
        if rank == 0:
            directory = _write_checkpoint_dir(
                model, optimizer, epoch=epoch, pos_weight=pos_weight, config=config, window=window
            )
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(directory) if directory else None,
            delete_local_checkpoint_after_upload=True,
        )
        if rank == 0:
            t_end = time.perf_counter()
            log.info(
                "epoch %d: %.2f s (data %.2f s, steps %.2f s, validation %.2f s, checkpoint and report %.2f s)",
                epoch, t_end - t_epoch, train_batches.seconds, t_val - t_epoch - train_batches.seconds,
                t_report - t_val, t_end - t_report,
            )
        if previous_dir is not None:  # already gone after an upload; kept by local mode
            shutil.rmtree(previous_dir, ignore_errors=True)
        previous_dir = directory


def fit_detector(
    train_ds,
    val_ds,
    *,
    config: dict,
    num_workers: int,
    use_gpu: bool,
    storage_path: str,
    run_name: str,
    storage_filesystem=None,
    callbacks: Sequence[ray.train.UserCallback] = (),
    max_failures: int = 2,
    read_audio: Callable[[str], np.ndarray] | None = None,
) -> ray.train.Result:
    """Runs ``train_loop_per_worker`` on ``num_workers`` Ray workers and returns the result.

    Re-running with the same ``storage_path`` + ``run_name`` resumes from the latest
    checkpoint. ``num_workers=0`` runs the loop in this process (Train V2 local mode):
    no controller, no callbacks, no persisted checkpoints and no resume across runs;
    ``Result.checkpoint`` is then a local directory.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    validate_config(config)
    collect_reports_promptly()
    trainer = TorchTrainer(
        functools.partial(train_loop_per_worker, read_audio=read_audio),
        train_loop_config=config,
        datasets={"train": train_ds, "val": val_ds},
        dataset_config=whole_datasets_in_order(),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            callbacks=list(callbacks),
        ),
    )
    return trainer.fit()


def checkpoint_bytes(checkpoint: ray.train.Checkpoint) -> bytes:
    """The ``save_checkpoint`` bytes inside a checkpoint reported by this loop."""
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, MODEL_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"checkpoint {checkpoint.path} holds no {MODEL_FILE}; found {sorted(os.listdir(directory))}"
            )
        with open(path, "rb") as f:
            return f.read()
