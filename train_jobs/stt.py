"""Speech-to-text training: ``python -m train_jobs.stt pretrain|finetune``.

``finetune --model-id N`` is what ``POST /api/v3/custom_models/{id}/run`` launches as a
Ray Job, and it runs the same way by hand::

    ray job submit --working-dir . -- python -m train_jobs.stt finetune --model-id 7

(standalone, it first claims the model for a run exactly as ``/run`` does). It fine-tunes
the model's base with Ray Train (DDP over ``num_workers``, GPUs when present, a checkpoint
every epoch, resuming after a worker failure) on the model's pairs (Ray Data hands the workers
the list; each decodes its own share: data_pipelines.stt_preprocess), attaches a word language
model of the training transcripts (train_jobs.stt_lm), scores the base and the fine-tuned
model on the same test utterances (the uploaded test pairs, else a seeded hold-out of the
training pairs) and records the result.
Progress follows the documented phases: 0-10 preprocessing, 10-30 initial epochs, 30-70
main training, 70-90 fine-tuning (the last quarter of the epochs), 90-100 evaluation.
Training data is augmented afresh every epoch unless ``--augmentation '{"enabled": false}'``
(options: schemas.augmentation; POST /run passes its body's ``augmentation`` here).

``pretrain ...`` makes the shipped ``general`` base model (train_jobs.stt_pretrain).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import ray
import ray.train

from cluster.blob_keys import training_storage_key
from cluster.blobs import make_blob_store
from cluster.custom_models import (
    TrainingNotActive,
    TrainingRun,
    append_log,
    begin_training,
    complete,
    fail,
    load_training_data,
    mark_progress,
    training_run,
)
from cluster.db import init_schema, session_scope, signing_secret
from cluster.gpus import use_gpu
from cluster.launcher import current_submission_id
from cluster.stt_tables import CustomModel
from data_pipelines.stt_preprocess import PairAudio, pair_rows, split_pairs
from data_pipelines.text import TranscriptError, normalize_transcript
from schemas.augmentation import Augmentation
from schemas.settings import Settings
from schemas.stt import TrainingStatus
from train_jobs.base_models import base_checkpoint
from train_jobs.models.stt import with_language_model
from train_jobs.stt_eval import accuracy_improvement
from train_jobs.stt_loop import AUGMENTATION_HELP, augmentation_arg, checkpoint_bytes, finetune_config, fit_stt

log = logging.getLogger("fathom.train.stt")

PREPROCESSING_END = 10.0
TRAINING_END = 90.0
HOLDOUT_FRACTION = 0.1  # of the training pairs, when no test pairs were uploaded


def epoch_phase(epoch: int, epochs: int) -> tuple[float, str]:
    """(progress percent, phase name) after ``epoch`` of ``epochs``: the documented 10-30-70-90 phases."""
    fraction = epoch / max(epochs, 1)
    progress = PREPROCESSING_END + (TRAINING_END - PREPROCESSING_END) * fraction
    if fraction <= 0.25:
        return progress, "Initial training epochs"
    if fraction <= 0.75:
        return progress, "Main training"
    return progress, "Fine-tuning"


class EpochLog(ray.train.UserCallback):
    """Progress and a log line per epoch, from the Train controller; never raises (bookkeeping
    must not fail a run), and stops nothing: a deleted or stopped model is caught at completion."""

    def __init__(self, database_url: str, model_id: int, epochs: int, test_source: str):
        self.database_url, self.model_id, self.epochs, self.test_source = database_url, model_id, epochs, test_source

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        m = metrics[0] if metrics else {}
        epoch = int(m.get("epoch", 0))
        if epoch == 0:  # the workers' first read: what was usable
            progress, skipped = PREPROCESSING_END, int(m.get("skipped", 0))
            message = (
                f"Preprocessing complete: {m.get('train_utterances', 0)} training utterances "
                f"({m.get('train_seconds', 0.0) / 3600:.2f} h), {m.get('val_utterances', 0)} test utterances from "
                f"{self.test_source}" + (f", {skipped} skipped" if skipped else "")
            )
        else:
            progress, phase = epoch_phase(epoch, self.epochs)
            message = (
                f"{phase}: epoch {epoch}/{self.epochs} - train loss {m.get('train_loss', float('nan')):.3f}, "
                f"validation WER {m.get('val_wer', float('nan')):.1f}%, CER {m.get('val_cer', float('nan')):.1f}%"
            )
        try:
            mark_progress(self.database_url, self.model_id, progress, message)
        except Exception:
            log.exception("could not record progress of custom model %s", self.model_id)


def score_models(settings: Settings, base: bytes, tuned: bytes, test_keys: list[tuple[str, str]], use_gpu: bool) -> dict:
    """Base and fine-tuned model on the same test utterances, with their own vocabularies boosted.

    On a GPU cluster in a task that holds a GPU; on a CPU cluster in this driver, whose CPUs the
    finished Train workers have given back (a fresh task process would spend longer starting and
    importing torch than a few hundred utterances take to score).
    """
    if use_gpu:
        remote = ray.remote(num_cpus=1, num_gpus=1)(_score_models)
        return ray.get(remote.remote(settings, base, tuned, test_keys, "cuda"))
    return _score_models(settings, base, tuned, test_keys, "cpu")


def _score_models(settings: Settings, base: bytes, tuned: bytes, test_keys: list[tuple[str, str]], device: str) -> dict:
    from data_pipelines.audio import decode_audio
    from data_pipelines.preprocess import worker_blob_store
    from data_pipelines.stt_preprocess import MAX_UTTERANCE_S
    from train_jobs.models.stt import load_stt_checkpoint
    from train_jobs.stt_eval import evaluate

    blobs = worker_blob_store(settings, signing_secret(settings.database_url))
    items = []
    for key, text in test_keys:
        try:
            items.append((decode_audio(blobs.get_bytes(key), max_seconds=MAX_UTTERANCE_S).waveform, text))
        except Exception:
            continue  # logged by preprocessing already
    if not items:
        raise ValueError("no test utterance could be decoded")
    out = {}
    for name, data in (("base", base), ("custom", tuned)):
        model, meta = load_stt_checkpoint(data, map_location=device)
        out[name] = {k: v for k, v in evaluate(model, meta, items, device=device).items() if k != "hypotheses"}
    return out


def finetune(settings: Settings, run: TrainingRun, args: argparse.Namespace) -> dict:
    """One run of ``run.model_id``; returns its training_metrics (already recorded)."""
    url, model_id = settings.database_url, run.model_id
    blobs = make_blob_store(settings, secret=init_schema(url).signing_secret.encode())
    epochs = args.epochs or settings.stt_finetune_epochs
    num_workers = args.num_workers if args.num_workers is not None else settings.train_num_workers
    gpu = use_gpu(settings, args.use_gpu)
    augmentation = args.augmentation

    mark_progress(url, model_id, 1.0, "Preprocessing: the training workers decode and featurise the data")
    train_pairs, test_pairs = split_pairs(load_training_data(url, model_id), holdout_fraction=HOLDOUT_FRACTION, seed=args.seed)
    if not train_pairs:
        raise ValueError("no training files: every uploaded pair is a test pair")
    source = "uploaded test files" if any(p.type == "test" for p in test_pairs) else "a held-out split of the training files"

    append_log(url, model_id, describe_augmentation(augmentation))
    base = base_checkpoint(run.base_model)
    start = ssl_start(base, args.ssl_bundle or settings.stt_ssl_bundle)
    if start is not base:
        append_log(url, model_id, f"Starting from the self-supervised encoder {args.ssl_bundle or settings.stt_ssl_bundle}")
    result = fit_stt(
        ray.data.from_items(pair_rows(train_pairs)),
        ray.data.from_items(pair_rows(test_pairs)),
        config=finetune_config(
            start, epochs=epochs, batch_size=settings.stt_finetune_batch_size, seed=args.seed, augmentation=augmentation
        ),
        num_workers=num_workers,
        use_gpu=gpu,
        storage_path=blobs.arrow_path(training_storage_key(f"stt-{model_id}-{run.run}")),
        storage_filesystem=blobs.arrow_filesystem(),
        run_name=f"stt-{model_id}-{run.run}",
        callbacks=[EpochLog(url, model_id, epochs, source)],
        read_pair=PairAudio(settings, signing_secret(url), model_id),
    )
    if result.checkpoint is None:  # the loop trains nothing without both; its preprocessing line says which
        raise ValueError("no usable training or test audio after preprocessing")
    data = result.metrics
    tuned = with_language_model(checkpoint_bytes(result.checkpoint), training_texts(train_pairs))
    append_log(url, model_id, "Language model of the training transcripts attached for decoding")

    mark_progress(url, model_id, TRAINING_END + 1, "Evaluating the base and the custom model on the test data")
    test_keys = [(p.audio_key, p.transcript) for p in test_pairs]
    scores = score_models(settings, base, tuned, test_keys, gpu)
    b, c = scores["base"], scores["custom"]

    metrics = {
        "word_error_rate": c["word_error_rate"],
        "character_error_rate": c["character_error_rate"],
        "accuracy_improvement": accuracy_improvement(b["word_error_rate"], c["word_error_rate"]),
        "training_hours": round(data["train_seconds"] / 3600, 4),
        "test_word_error_rate": c["word_error_rate"],
        "base_word_error_rate": b["word_error_rate"],
        "base_character_error_rate": b["character_error_rate"],
        "test_utterances": c["utterances"],
        "training_utterances": int(data["train_utterances"]),
        "epochs": epochs,
        "validation_word_error_rate": round(float(data.get("val_wer", float("nan"))), 2),
    }
    append_log(
        url, model_id,
        f"Evaluation on {c['utterances']} test utterances: base WER {b['word_error_rate']:.1f}% "
        f"(CER {b['character_error_rate']:.1f}%), custom WER {c['word_error_rate']:.1f}% "
        f"(CER {c['character_error_rate']:.1f}%), improvement {metrics['accuracy_improvement']:.1f}%",
    )

    blobs.put_bytes(run.checkpoint_key, tuned)
    try:
        complete(url, model_id, checkpoint_key=run.checkpoint_key, training_metrics=metrics)
    except TrainingNotActive:
        blobs.delete(run.checkpoint_key)  # never leave a model file behind for a run that did not complete
        raise
    return metrics


def training_texts(pairs) -> list[str]:
    """Normalised transcripts of the training pairs (never the test pairs) for the word language model."""
    texts = []
    for p in pairs:
        try:
            texts.append(normalize_transcript(p.transcript))
        except TranscriptError:
            continue  # refused at upload already; nothing to learn from
    return texts


def describe_augmentation(aug: Augmentation) -> str:
    """The training log's line about augmentation."""
    families = [f for f in Augmentation.model_fields if f != "enabled" and getattr(aug, f) is not None]
    if not aug.enabled or not families:
        return "Augmentation off: training on the clean features"
    return f"Augmentation on, drawn afresh every epoch: {', '.join(families)}"


def ssl_start(base: bytes, bundle: str | None) -> bytes:
    """The checkpoint to fine-tune: the shipped base, or a local torchaudio SSL encoder with a fresh
    CTC head carrying the base's name and vocabulary (the base stays the comparison)."""
    if not bundle:
        return base
    from train_jobs.models.stt import load_ssl_encoder, load_stt_checkpoint, save_stt_checkpoint

    _, meta = load_stt_checkpoint(base)
    return save_stt_checkpoint(load_ssl_encoder(bundle), base_model=meta.base_model, vocabulary=meta.vocabulary)


def claim_for_standalone(settings: Settings, model_id: int, ray_job_id: str | None) -> None:
    """A hand-submitted run claims its model like POST /run (same checks); an API launch already did."""
    with session_scope(settings.database_url) as s:
        model = s.get(CustomModel, model_id)
        if model is None:
            raise SystemExit(f"custom model {model_id} not found")
        if model.training_status == TrainingStatus.RUNNING and model.ray_job_id in (None, ray_job_id):
            return
        model = begin_training(s, settings, model_id, model.organization_id)
        model.ray_job_id = ray_job_id
        s.commit()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train_jobs.stt", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    ft = sub.add_parser("finetune", help="fine-tune a custom model's base on its uploaded data")
    ft.add_argument("--model-id", type=int, required=True)
    ft.add_argument("--epochs", type=int, help="default: FATHOM_STT_FINETUNE_EPOCHS")
    ft.add_argument("--num-workers", type=int, help="Ray Train workers; default: FATHOM_TRAIN_NUM_WORKERS")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None)
    ft.add_argument("--ssl-bundle", help="start from this local torchaudio bundle; default: FATHOM_STT_SSL_BUNDLE")
    ft.add_argument("--augmentation", type=augmentation_arg, default=Augmentation(), help=AUGMENTATION_HELP)
    sub.add_parser("pretrain", help="make the general base model (see train_jobs.stt_pretrain --help)", add_help=False)
    args, rest = p.parse_known_args(argv)
    if args.command == "finetune" and rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    if args.command == "pretrain":
        from train_jobs import stt_pretrain

        stt_pretrain.main(args.rest)
        return 0
    settings = Settings()
    init_schema(settings.database_url)
    ray.init(address=settings.ray_address or os.environ.get("RAY_ADDRESS") or "auto", log_to_driver=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        claim_for_standalone(settings, args.model_id, current_submission_id(settings))
        run = training_run(settings.database_url, args.model_id)
    except Exception as e:
        log.error("custom model %s cannot train: %s", args.model_id, e)
        return 1
    try:
        metrics = finetune(settings, run, args)
    except TrainingNotActive as e:
        log.info("%s", e)
        return 0
    except BaseException as e:
        log.exception("training of custom model %s failed", args.model_id)
        fail(settings.database_url, args.model_id, f"Training failed: {type(e).__name__}: {e}")
        return 1
    print(f"custom model {args.model_id} trained: WER {metrics['word_error_rate']}%, improvement {metrics['accuracy_improvement']}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
