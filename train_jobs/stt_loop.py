"""Ray Train (V2) loop for the CTC speech-to-text models: pre-training and fine-tuning.

Each worker reads its share of the ``"train"`` and ``"val"`` datasets (every ``world``-th row,
train_jobs.shards), rows ``{"audio": 16 kHz waveform [n]}`` or ``{"features": log-mel [T,
n_mels]}`` plus ``{"text": normalised transcript}``, or pair rows ``{"audio_key", "text"}``
that it decodes itself (``read_pair``, data_pipelines.stt_preprocess) into waveforms when
training augments them and into clean log-mel features otherwise. It reads both shares once
before the first epoch, keeps them in memory for later epochs (streaming what does not fit),
and, when it decoded pairs, reports what was usable as epoch 0 before training (all-reduced
counts: a job's "preprocessing complete"). Rows are bucketed by length (fewer padded frames),
the DDP-wrapped model is trained with CTC loss, AdamW, linear warm-up then cosine decay by
step, and gradient clipping; ranks with fewer batches join early (DDP Join) and validation runs
on the bare module. Every rank reports once per epoch (train/val loss, greedy val
WER and CER); rank 0 attaches a checkpoint with the model bytes and the optimizer state,
so a restarted or re-launched run (same ``storage_path`` + ``name``) resumes after the
last finished epoch.

Training rows are augmented afresh every epoch in this iterator (``config["augmentation"]``,
schemas.augmentation; on unless ``{"enabled": false}``): waveform rows get speed, noise,
telephone, gain and codec perturbation, are featurised here for log-mel models, and every
feature row gets SpecAugment, drawn per (seed, epoch, row ``id`` or content hash), never per
worker or order; the model's own unseeded masks are then off. Validation rows stay clean.

The model starts from ``config["dims"]`` (random weights) or from ``config["base_checkpoint"]``
(``save_stt_checkpoint`` bytes, or a path to them), which is how custom models are
fine-tuned, at a lower learning rate (FINETUNE_LEARNING_RATE).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from pydantic import ValidationError
from torch import nn

from data_pipelines.augment import augment_utterance, utterance_id, utterance_seed
from data_pipelines.audio import SAMPLE_RATE
from data_pipelines.stt_features import HOP, log_mel
from schemas.augmentation import Augmentation
from train_jobs.models.stt import (
    CtcConformer,
    SslCtc,
    SttDims,
    build_stt_model,
    load_stt_checkpoint,
    save_stt_checkpoint,
)
from train_jobs.progress import collect_reports_promptly
from train_jobs.shards import MemoryShard, bare_module, joined, rank_share, whole_datasets_in_order
from train_jobs.stt_decoding import greedy_decode
from train_jobs.stt_eval import char_edits, word_edits
from train_jobs.stt_vocab import BLANK, encode

log = logging.getLogger("fathom.train.stt")

MODEL_FILE = "stt.pt"  # save_stt_checkpoint bytes inside a Ray checkpoint directory
TRAIN_STATE_FILE = "train_state.pt"  # {"epoch", "step", "optimizer"}
CHECKPOINTS_KEPT = 2
PRETRAIN_LEARNING_RATE = 2e-3  # AdamW peak, random initialisation
FINETUNE_LEARNING_RATE = 3e-4  # AdamW peak, from a base checkpoint
WEIGHT_DECAY = 1e-2
ADAM_BETAS = (0.9, 0.98)
GRAD_CLIP_NORM = 5.0  # global L2 norm
WARMUP_FRACTION = 0.08  # of all steps, linear warm-up
MIN_LR_FRACTION = 0.02  # cosine floor, fraction of the peak
BUCKET_BATCHES = 8  # rows read at once = batch_size * this, sorted by length into batches

REQUIRED_CONFIG_KEYS = ("epochs", "learning_rate", "batch_size", "seed")


def validate_config(config: Mapping[str, Any]) -> None:
    """Checks the loop config on the driver before any worker starts."""
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"stt train config lacks {missing}; required keys are {list(REQUIRED_CONFIG_KEYS)}")
    if ("dims" in config) == ("base_checkpoint" in config):
        raise ValueError("stt train config needs exactly one of 'dims' (new model) or 'base_checkpoint' (fine-tuning)")
    if "dims" in config:
        try:
            SttDims(**config["dims"])
        except TypeError as e:
            raise ValueError(f"bad dims in stt train config: {e}") from e
    elif not isinstance(config["base_checkpoint"], (bytes, str)):
        raise ValueError("base_checkpoint must be checkpoint bytes or a path to them")
    if int(config["epochs"]) < 1 or int(config["batch_size"]) < 1 or float(config["learning_rate"]) <= 0:
        raise ValueError("epochs and batch_size must be >= 1 and learning_rate > 0")
    augmentation_of(config)


AUGMENTATION_HELP = 'JSON of schemas.augmentation.Augmentation, e.g. \'{"enabled": false}\'; default: on'


def augmentation_arg(text: str) -> Augmentation:
    """argparse type of an ``--augmentation`` JSON option."""
    try:
        return Augmentation.model_validate_json(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid augmentation options: {e}") from e


def augmentation_of(config: Mapping[str, Any]) -> Augmentation:
    """The run's augmentation options (defaults when the config names none)."""
    try:
        return Augmentation.model_validate(config.get("augmentation") or {})
    except ValidationError as e:
        raise ValueError(f"bad augmentation in stt train config: {e}") from e


def lr_at(step: int, *, peak: float, total_steps: int, warmup_fraction: float = WARMUP_FRACTION) -> float:
    """Linear warm-up to ``peak`` then cosine decay to MIN_LR_FRACTION * peak; step is 0-based."""
    warmup = max(1, round(warmup_fraction * total_steps))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return peak * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _row_length(row_input: np.ndarray) -> int:
    return int(np.asarray(row_input).shape[0])


Prepare = Callable[[np.ndarray, str, Any], np.ndarray]  # (row input, text, row id or None) -> model input


ReadPair = Callable[[dict[str, Any]], "np.ndarray | None"]  # pair row -> 16 kHz float32 waveform, None when unusable


def _clean_features(wave: np.ndarray, n_mels: int | None) -> np.ndarray:
    with torch.inference_mode():
        feats, _ = log_mel(torch.from_numpy(wave)[None], torch.tensor([wave.size]), *([n_mels] if n_mels else []))
    return feats[0].numpy()


def utterance_rows(
    rows, read_pair: ReadPair | None, *, waveform: bool, n_mels: int | None, tally: np.ndarray
) -> Iterator[dict[str, Any]]:
    """Rows ready to train on: ``audio`` or ``features`` rows as they come; a pair row (``audio_key``)
    decoded by ``read_pair`` into an ``audio`` row (float16, ``id`` its blob key: the augmentation's
    stable id) when ``waveform``, else a clean log-mel ``features`` row (float16); a pair that no
    longer decodes is skipped. ``tally`` accumulates [rows, seconds, skipped]."""
    for row in rows:
        if "audio_key" not in row:
            tally[0] += 1
            samples = np.asarray(row["audio"]).shape[0] if "audio" in row else np.asarray(row["features"]).shape[0] * HOP
            tally[1] += samples / SAMPLE_RATE
            yield row
            continue
        if read_pair is None:
            raise ValueError(f"row {row['audio_key']} names a blob but the loop was given no read_pair to decode it")
        wave = read_pair(row)
        if wave is None:
            tally[2] += 1
            continue
        tally[0] += 1
        tally[1] += wave.size / SAMPLE_RATE
        if waveform:
            yield {"audio": wave.astype(np.float16), "text": row["text"], "id": row["audio_key"]}
        else:
            yield {"features": _clean_features(wave, n_mels).astype(np.float16), "text": row["text"]}


def _row_nbytes(row: dict[str, Any]) -> int:
    return int(np.asarray(row["audio"] if "audio" in row else row["features"]).nbytes)


def _shuffled(rows, rng: random.Random, buffer: int) -> Iterator[dict[str, Any]]:
    """``rows`` through a shuffle buffer of ``buffer`` rows (a shard may stream: never the whole list)."""
    pending: list[dict[str, Any]] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= buffer:
            i = rng.randrange(len(pending))
            pending[i], pending[-1] = pending[-1], pending[i]
            yield pending.pop()
    rng.shuffle(pending)
    yield from pending


def _batches(
    shard, batch_size: int, *, shuffle: bool, rng: random.Random, prepare: Prepare | None = None
) -> Iterator[tuple[list[np.ndarray], list[str]]]:
    """(inputs, texts) mini-batches of ``shard``'s rows; rows taken BUCKET_BATCHES batches at a time,
    passed through ``prepare`` (this epoch's augmentation) and length-sorted."""
    block = batch_size * BUCKET_BATCHES
    rows = _shuffled(iter(shard), rng, block * 2) if shuffle else iter(shard)
    while chunk := list(itertools.islice(rows, block)):
        key = "features" if "features" in chunk[0] else "audio"
        inputs, texts = [r[key] for r in chunk], [str(r["text"]) for r in chunk]
        if prepare is not None:
            inputs = [prepare(np.asarray(r[key], np.float32), t, r.get("id")) for r, t in zip(chunk, texts)]
        order = sorted(range(len(texts)), key=lambda i: _row_length(inputs[i]))
        groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if shuffle:
            rng.shuffle(groups)
        for g in groups:
            yield [np.asarray(inputs[i], dtype=np.float32) for i in g], [texts[i] for i in g]


def epoch_augmenter(aug: Augmentation, *, seed: int, epoch: int, module: nn.Module) -> Prepare | None:
    """This epoch's ``prepare`` for training rows, or None (clean rows) when augmentation is off.

    Waveforms are featurised here for log-mel models, so SpecAugment can follow; waveform
    models (SslCtc) take the perturbed waveform itself.
    """
    if not aug.enabled:
        return None
    n_mels = module.dims.n_mels if isinstance(module, CtcConformer) else None
    featurize = functools.partial(_clean_features, n_mels=n_mels)

    def prepare(x: np.ndarray, text: str, row_id: Any) -> np.ndarray:
        seq = utterance_seed(seed, epoch, utterance_id(row_id, x, text))
        out = augment_utterance(x, aug, seq, featurize=featurize if n_mels else None)
        return np.asarray(out, np.float32)

    return prepare


def _forward(model: nn.Module, inputs: list[np.ndarray], device: torch.device):
    lengths = torch.tensor([x.shape[0] for x in inputs])
    padded = torch.zeros((len(inputs), int(lengths.max()), *inputs[0].shape[1:]))
    for i, x in enumerate(inputs):
        padded[i, : x.shape[0]] = torch.from_numpy(x)
    padded, lengths = padded.to(device), lengths.to(device)
    module = getattr(model, "module", model)
    if padded.ndim == 2:  # waveforms: the model's own front end
        padded, lengths = module.featurize(padded, lengths)
    return model(padded, lengths)


def _ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """Summed CTC loss over the batch (infeasible utterances contribute 0)."""
    targets = [torch.tensor(encode(t), dtype=torch.long) for t in texts]
    target_lengths = torch.tensor([len(t) for t in targets])
    return nn.functional.ctc_loss(
        log_probs.transpose(0, 1),
        torch.cat(targets).to(log_probs.device),
        out_lengths,
        target_lengths.to(log_probs.device),
        blank=BLANK,
        reduction="sum",
        zero_infinity=True,
    )


def _run_epoch(
    model, shard, *, batch_size: int, device, optimizer=None, lr_fn=None, step: int = 0, rng=None, prepare=None
):
    """One pass over a shard; trains when given an optimizer. Returns (sums tensor, next step).

    sums: this rank's [loss, utterances, chars, char edits, words, word edits] (edits from greedy
    decoding, validation only).
    """
    training = optimizer is not None
    model.train(training)
    sums = torch.zeros(6, dtype=torch.float64, device=device)
    use_amp = device.type == "cuda"
    for inputs, texts in _batches(shard, batch_size, shuffle=training, rng=rng or random.Random(0), prepare=prepare):
        with torch.set_grad_enabled(training), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            log_probs, out_lengths = _forward(model, inputs, device)
            loss = _ctc_loss(log_probs.float(), out_lengths, texts)
        if training:
            for group in optimizer.param_groups:
                group["lr"] = lr_fn(step)
            optimizer.zero_grad(set_to_none=True)
            (loss / len(texts)).backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
            step += 1
        else:
            lp, lens = log_probs.float().cpu().numpy(), out_lengths.cpu().numpy()
            hyps = [greedy_decode(lp[i, : lens[i]]) for i in range(len(texts))]
            sub, dele, ins, n_words = word_edits(texts, hyps)
            sums[4] += n_words
            sums[5] += sub + dele + ins
            c_edits, n_chars = char_edits(texts, hyps)
            sums[2] += n_chars
            sums[3] += c_edits
        sums[0] += float(loss.detach())
        sums[1] += len(texts)
    return sums, step


def _load_base(config: Mapping[str, Any]) -> tuple[nn.Module, str, list[str]]:
    """(model, base model name, domain vocabulary) to start from."""
    if "dims" in config:
        return (
            build_stt_model(SttDims(**config["dims"])),
            str(config.get("base_model", "general")),
            list(config.get("vocabulary", ())),
        )
    source = config["base_checkpoint"]
    if isinstance(source, str):
        with open(source, "rb") as f:
            source = f.read()
    model, meta = load_stt_checkpoint(source)
    base_model = str(config.get("base_model", meta.base_model))
    return model, base_model, list(config.get("vocabulary", meta.vocabulary))


def train_loop_per_worker(config: dict, read_pair: ReadPair | None = None) -> None:
    """Per-worker loop for ``TorchTrainer``; config: REQUIRED_CONFIG_KEYS + dims | base_checkpoint,
    optional steps_per_epoch (set by fit_stt), warmup_fraction, base_model, vocabulary, torch_threads,
    augmentation (schemas.augmentation.Augmentation fields; default: on). ``read_pair`` decodes the
    rows that name a blob (data_pipelines.stt_preprocess.PairAudio).
    """
    validate_config(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")  # a no-op where set
    t_start = time.perf_counter()
    epochs, batch_size, peak = int(config["epochs"]), int(config["batch_size"]), float(config["learning_rate"])
    aug, seed = augmentation_of(config), int(config["seed"])
    if config.get("torch_threads"):
        torch.set_num_threads(int(config["torch_threads"]))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(int(config["seed"]))  # identical initial weights on every rank
    rng = random.Random(int(config["seed"]) * 1000 + rank)

    model, base_model, vocabulary = _load_base(config)
    if aug.enabled and isinstance(model, CtcConformer):
        model.spec_augment = False  # the data path draws SpecAugment, seeded per utterance
    start_epoch, step, optimizer_state = 1, 0, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, MODEL_FILE), "rb") as f:
                restored, _ = load_stt_checkpoint(f.read())
            state = torch.load(os.path.join(directory, TRAIN_STATE_FILE), weights_only=True)
        model.load_state_dict(restored.state_dict())
        start_epoch, step, optimizer_state = int(state["epoch"]) + 1, int(state["step"]), state["optimizer"]

    strategy = {"find_unused_parameters": True} if isinstance(model, SslCtc) else None
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=strategy)
    device = ray.train.torch.get_device()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=peak, betas=ADAM_BETAS, weight_decay=WEIGHT_DECAY)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    steps_per_epoch = int(config.get("steps_per_epoch") or 1)
    total_steps = epochs * steps_per_epoch
    warmup = float(config.get("warmup_fraction", WARMUP_FRACTION))
    lr_fn = lambda s: lr_at(s, peak=peak, total_steps=total_steps, warmup_fraction=warmup)
    module = bare_module(model)
    n_mels = module.dims.n_mels if isinstance(module, CtcConformer) else None
    tallies = np.zeros((2, 3))  # train, val: [rows, seconds, skipped] of the first pass

    def share(name: str, waveform: bool, tally: np.ndarray) -> MemoryShard:
        rows = ray.train.get_dataset_shard(name)
        return MemoryShard(
            lambda: utterance_rows(rank_share(rows, rank, world), read_pair, waveform=waveform, n_mels=n_mels, tally=tally),
            _row_nbytes,
        )

    train_shard, val_shard = share("train", aug.uses_waveform, tallies[0]), share("val", False, tallies[1])
    t_read = time.perf_counter()
    for shard in (train_shard, val_shard):  # read (and decode) once now; later passes replay memory
        for _ in shard:
            pass
    if rank == 0:
        log.info(
            "model ready in %.2f s; this rank's %d training and %d validation utterances read in %.2f s",
            t_read - t_start, tallies[0][0], tallies[1][0], time.perf_counter() - t_read,
        )
    data = _all_reduce_sum(torch.as_tensor(tallies.reshape(-1), dtype=torch.float64, device=device)).cpu().tolist()
    data_metrics = {"train_utterances": int(data[0]), "train_seconds": data[1], "val_utterances": int(data[3]),
                    "skipped": int(data[2] + data[5])}
    if read_pair is not None and start_epoch == 1:
        ray.train.report({"epoch": 0, "epochs": epochs, **data_metrics})  # what was usable, before training
    if not data_metrics["train_utterances"] or not data_metrics["val_utterances"]:
        return  # nothing to train or validate on; the epoch-0 report says which

    previous_dir = None
    for epoch in range(start_epoch, epochs + 1):
        with joined(model):
            train_sums, step = _run_epoch(
                model,
                train_shard,
                batch_size=batch_size,
                device=device,
                optimizer=optimizer,
                lr_fn=lr_fn,
                step=step,
                rng=rng,
                prepare=epoch_augmenter(aug, seed=seed, epoch=epoch, module=module),
            )
        val_sums, _ = _run_epoch(module, val_shard, batch_size=batch_size, device=device)
        t, v = _all_reduce_sum(train_sums).cpu().tolist(), _all_reduce_sum(val_sums).cpu().tolist()
        metrics = {
            "epoch": epoch,
            "epochs": epochs,
            "step": step,
            "learning_rate": lr_fn(max(0, step - 1)),
            "train_loss": t[0] / max(t[1], 1),
            "val_loss": v[0] / max(v[1], 1),
            "val_wer": 100.0 * v[5] / max(v[4], 1),
            "val_cer": 100.0 * v[3] / max(v[2], 1),
            "train_utterances": int(t[1]),
            "val_utterances": int(v[1]),
            "train_seconds": data_metrics["train_seconds"],
            "skipped": data_metrics["skipped"],
        }
        directory = None
        if rank == 0:
            directory = tempfile.mkdtemp(prefix="fathom-stt-ckpt-")
            extra = {k: metrics[k] for k in ("epoch", "val_loss", "val_wer", "val_cer")}
            with open(os.path.join(directory, MODEL_FILE), "wb") as f:
                f.write(save_stt_checkpoint(model, extra=extra, base_model=base_model, vocabulary=vocabulary))
            torch.save(
                {"epoch": epoch, "step": step, "optimizer": optimizer.state_dict()},
                os.path.join(directory, TRAIN_STATE_FILE),
            )
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(directory) if directory else None,
            delete_local_checkpoint_after_upload=True,
        )
        if previous_dir is not None:  # already gone after an upload; kept by local mode
            shutil.rmtree(previous_dir, ignore_errors=True)
        previous_dir = directory


def pretrain_config(
    dims: SttDims,
    *,
    epochs: int,
    batch_size: int = 32,
    learning_rate: float = PRETRAIN_LEARNING_RATE,
    seed: int = 0,
    augmentation: Augmentation | None = None,
) -> dict:
    """Loop config for a new model of ``dims``."""
    return {
        "dims": asdict(dims),
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "augmentation": (augmentation or Augmentation()).model_dump(mode="json"),
    }


def finetune_config(
    base_checkpoint: bytes | str,
    *,
    epochs: int,
    batch_size: int = 16,
    learning_rate: float = FINETUNE_LEARNING_RATE,
    seed: int = 0,
    base_model: str | None = None,
    vocabulary: Sequence[str] | None = None,
    augmentation: Augmentation | None = None,
) -> dict:
    """Loop config that fine-tunes ``base_checkpoint``; base_model/vocabulary default to the base's."""
    config = {
        "base_checkpoint": base_checkpoint,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "augmentation": (augmentation or Augmentation()).model_dump(mode="json"),
    }
    if base_model is not None:
        config["base_model"] = base_model
    if vocabulary is not None:
        config["vocabulary"] = list(vocabulary)
    return config


def fit_stt(
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
    cpus_per_worker: float = 1.0,
    read_pair: ReadPair | None = None,
) -> ray.train.Result:
    """Runs ``train_loop_per_worker`` on ``num_workers`` Ray workers and returns the result.

    Counts ``train_ds`` rows to size the learning-rate schedule (materialise the dataset
    first to avoid running its pipeline twice); ``read_pair`` decodes pair rows in the
    workers. Re-running with the same ``storage_path`` + ``run_name`` resumes from the
    latest checkpoint; ``num_workers=0`` runs in this process
    (Train V2 local mode: no callbacks, no resume, ``Result.checkpoint`` is a local directory).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    validate_config(config)
    config = dict(config)
    if "steps_per_epoch" not in config:
        rows_per_worker = math.ceil(train_ds.count() / max(1, num_workers))
        config["steps_per_epoch"] = max(1, math.ceil(rows_per_worker / int(config["batch_size"])))
    collect_reports_promptly()
    trainer = TorchTrainer(
        functools.partial(train_loop_per_worker, read_pair=read_pair),
        train_loop_config=config,
        datasets={"train": train_ds, "val": val_ds},
        dataset_config=whole_datasets_in_order(),
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus_per_worker}
        ),
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
    """The ``save_stt_checkpoint`` bytes inside a checkpoint reported by this loop."""
    with checkpoint.as_directory() as directory:
        path = os.path.join(directory, MODEL_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"checkpoint {checkpoint.path} holds no {MODEL_FILE}; found {sorted(os.listdir(directory))}"
            )
        with open(path, "rb") as f:
            return f.read()
