"""Custom-model quality: a domain base model against its fine-tuned version on held-out speech.

A customer's vocabulary is the first CUSTOMER_TERMS terms of the domain's list (as in
tests/test_stt_learning.py). At least ``--hours`` of domain sentences drawn from it are
synthesised and featurised with Ray Data, the domain base model is fine-tuned on them with
``fit_stt`` on Ray Train workers, and both models are scored (beam search, the model's own
vocabulary boosted, as in production; the custom model with the word language model of its
training transcripts, as the job ships it) on a disjoint seeded held-out set of the same
vocabulary. Train, validation and test utterances come from separate seed streams
(TRAIN_SEED, VAL_SEED, TEST_SEED); bench/stt_peer.py scores the same test utterances.

Targets: custom WER <= 10 %, accuracy_improvement (relative WER reduction) >= 30 %.
Prints a table, writes bench/results/stt_quality.json and the custom checkpoint.

    python -m bench.stt_quality [--hours 1.0] [--test-utterances 200] [--epochs 24]
        [--num-workers 2] [--domain medical] [--out-checkpoint bench/results/stt_custom_<domain>.pt]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.common import RESULTS_DIR, print_table, write_results

TRAIN_SEED, VAL_SEED, TEST_SEED = 9101, 9102, 9103  # utterance_seed streams, one per split
CUSTOMER_TERMS = 30  # leading terms of DOMAIN_TERMS[domain]: the customer's vocabulary
SYNTH_BATCH = 16  # utterances per Ray Data synthesis task
HOURS_MARGIN = 1.03  # utterances synthesised per estimated need, so one pass usually suffices
TARGET_WER = 10.0  # percent, custom model on the held-out set
TARGET_IMPROVEMENT = 30.0  # percent, accuracy_improvement(base WER, custom WER)
SAMPLES_KEPT = 5  # reference/hypothesis pairs kept in the JSON
HISTORY_KEYS = ("train_loss", "val_loss", "val_wer", "val_cer")  # per-epoch metrics kept in the JSON


def customer_terms(domain: str) -> list[str]:
    from train_jobs.stt_vocab import DOMAIN_TERMS

    return DOMAIN_TERMS[domain][:CUSTOMER_TERMS]


def custom_checkpoint_path(domain: str) -> Path:
    return RESULTS_DIR / f"stt_custom_{domain}.pt"


def test_items(domain: str, n: int) -> list[tuple[np.ndarray, str]]:
    """The held-out (16 kHz waveform, written transcript) pairs; the first n of one fixed stream."""
    from data_pipelines.stt_corpus import make_utterance, utterance_seed

    terms = customer_terms(domain)
    return [make_utterance(utterance_seed(TEST_SEED, i), domain=domain, terms=terms) for i in range(n)]


def synthesize_rows(batch: dict, *, seed: int, domain: str, terms: Sequence[str], offset: int = 0) -> dict:
    """Ray Data map_batches: {"id"} -> {"features" float16 log-mel [T, 80], "text", "seconds"};
    row ``id`` is utterance ``offset + id`` of stream ``seed``."""
    import torch

    from data_pipelines.stt_corpus import make_utterance, utterance_seed
    from data_pipelines.text import normalize_transcript
    from data_pipelines.stt_features import log_mel
    from train_jobs.models.stt import SAMPLE_RATE

    feats, texts, seconds = [], [], []
    for i in batch["id"]:
        wave, text = make_utterance(utterance_seed(seed, offset + int(i)), domain=domain, terms=terms)
        f, _ = log_mel(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
        feats.append(f[0].numpy().astype(np.float16))
        texts.append(normalize_transcript(text))
        seconds.append(wave.size / SAMPLE_RATE)
    return {"features": feats, "text": np.array(texts, dtype=object), "seconds": np.array(seconds)}


def synthesize(start: int, stop: int, *, seed: int, domain: str):
    """Utterances start..stop-1 of stream ``seed`` as a materialised Ray dataset."""
    import ray

    n = stop - start
    return (
        ray.data.range(n, override_num_blocks=max(1, math.ceil(n / SYNTH_BATCH)))
        .map_batches(
            synthesize_rows, batch_size=SYNTH_BATCH,
            fn_kwargs={"seed": seed, "domain": domain, "terms": customer_terms(domain), "offset": start},
        )
        .materialize()
    )


def training_set(hours: float, domain: str, mean_s: float):
    """(dataset, utterances, hours): stream TRAIN_SEED until it holds at least ``hours`` of speech."""
    n = max(SYNTH_BATCH, math.ceil(HOURS_MARGIN * hours * 3600 / mean_s))
    ds = synthesize(0, n, seed=TRAIN_SEED, domain=domain)
    total_s = float(ds.sum("seconds"))
    while total_s < hours * 3600:  # the estimate fell short: top up from the same stream
        more = math.ceil(HOURS_MARGIN * (hours * 3600 - total_s) / mean_s) + 1
        extra = synthesize(n, n + more, seed=TRAIN_SEED, domain=domain)
        ds, n, total_s = ds.union(extra).materialize(), n + more, total_s + float(extra.sum("seconds"))
    return ds, n, total_s / 3600


def epoch_history(path: str):
    """A Ray Train callback appending each epoch's metrics to ``path`` (the controller runs on this
    host); the validation WER per epoch shows whether --epochs was enough."""
    import ray.train

    class EpochHistory(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint) -> None:
            m = metrics[0]
            row = {"epoch": int(m["epoch"])} | {k: round(float(m[k]), 4) for k in HISTORY_KEYS}
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")

    return EpochHistory()


def start_ray(num_workers: int) -> None:
    """A cluster of our own (or RAY_ADDRESS's); spare logical CPUs keep Ray Data beside Train."""
    import logging

    import ray

    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=max(1, num_workers) + 2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset INFO lines would bury the table


def scored(model, meta, items, device: str) -> tuple[dict, float]:
    """(evaluate() metrics, wall seconds)."""
    from train_jobs.stt_eval import evaluate

    start = time.perf_counter()
    metrics = evaluate(model, meta, items, device=device)
    return metrics, time.perf_counter() - start


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from train_jobs.stt_vocab import DOMAINS

    p = argparse.ArgumentParser(prog="python -m bench.stt_quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=1.0, help="minimum hours of training speech")
    p.add_argument("--test-utterances", type=int, default=200)
    p.add_argument("--val-utterances", type=int, default=48)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=8, help="utterances per worker and step")
    p.add_argument("--num-workers", type=int, default=2, help="Ray Train workers")
    p.add_argument("--domain", choices=DOMAINS, default="medical")
    p.add_argument("--seed", type=int, default=0, help="fit_stt seed (batch shuffling); data seeds are fixed")
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--out-checkpoint", type=Path, default=None, help="default: bench/results/stt_custom_<domain>.pt")
    args = p.parse_args(argv)
    args.out_checkpoint = args.out_checkpoint or custom_checkpoint_path(args.domain)
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    import ray
    import torch

    from data_pipelines.text import normalize_transcript
    from train_jobs.base_models import base_checkpoint, load_base_model
    from train_jobs.models.stt import SAMPLE_RATE, load_stt_checkpoint, with_language_model
    from train_jobs.stt_eval import accuracy_improvement
    from train_jobs.stt_loop import checkpoint_bytes, finetune_config, fit_stt

    device = "cuda" if args.use_gpu and torch.cuda.is_available() else "cpu"
    wall: dict[str, float] = {}
    t = time.perf_counter()
    test = test_items(args.domain, args.test_utterances)
    test_texts = [text for _, text in test]
    wall["test_synthesis"] = time.perf_counter() - t
    base_model, base_meta = load_base_model(args.domain, map_location=device)
    base, wall["base_eval"] = scored(base_model, base_meta, test, device)
    print(f"base {args.domain}: WER {base['word_error_rate']}% on {len(test)} held-out utterances", flush=True)

    start_ray(args.num_workers)
    t = time.perf_counter()
    mean_s = float(np.mean([w.size for w, _ in test])) / SAMPLE_RATE
    train_ds, n_train, train_hours = training_set(args.hours, args.domain, mean_s)
    val_ds = synthesize(0, args.val_utterances, seed=VAL_SEED, domain=args.domain)
    train_text_list = [str(r["text"]) for r in train_ds.select_columns(["text"]).take_all()]
    train_texts = set(train_text_list)
    wall["train_synthesis"] = time.perf_counter() - t
    print(f"training set: {n_train} utterances, {train_hours:.3f} h in {wall['train_synthesis']:.0f} s", flush=True)

    config = finetune_config(
        base_checkpoint(args.domain), epochs=args.epochs, batch_size=args.batch_size, seed=args.seed
    )
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fathom-bench-stt-") as storage:
        history_file = Path(storage, "history.jsonl")
        result = fit_stt(
            train_ds.select_columns(["features", "text"]),
            val_ds.select_columns(["features", "text"]),
            config=config,
            num_workers=args.num_workers,
            use_gpu=args.use_gpu,
            storage_path=storage,
            run_name=f"bench-stt-{args.domain}",
            callbacks=[epoch_history(str(history_file))],
        )
        if result.error is not None or result.checkpoint is None:
            raise RuntimeError(f"fine-tuning failed: {result.error}")
        # As the job ships it: the word language model of the training transcripts attached.
        tuned = with_language_model(checkpoint_bytes(result.checkpoint), train_text_list)
        history = [json.loads(x) for x in history_file.read_text().splitlines()] if history_file.exists() else []
    wall["training"] = time.perf_counter() - t
    ray.shutdown()
    args.out_checkpoint.parent.mkdir(parents=True, exist_ok=True)
    args.out_checkpoint.write_bytes(tuned)

    model, meta = load_stt_checkpoint(tuned, map_location=device)
    custom, wall["custom_eval"] = scored(model, meta, test, device)
    improvement = accuracy_improvement(base["word_error_rate"], custom["word_error_rate"])
    seen = sum(normalize_transcript(t) in train_texts for t in test_texts)

    def met(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print_table(
        ["model", "WER %", "CER %", "target", "eval wall s"],
        [
            [f"base {args.domain}", base["word_error_rate"], base["character_error_rate"], "", wall["base_eval"]],
            [
                "custom", custom["word_error_rate"], custom["character_error_rate"],
                f"WER <= {TARGET_WER:g}: {met(custom['word_error_rate'] <= TARGET_WER)}", wall["custom_eval"],
            ],
        ],
    )
    print(
        f"accuracy_improvement {improvement}% (target >= {TARGET_IMPROVEMENT:g}%: "
        f"{met(improvement >= TARGET_IMPROVEMENT)}); trained on {n_train} utterances, {train_hours:.3f} h, "
        f"{args.epochs} epochs x {args.num_workers} workers, batch {args.batch_size}; "
        f"test {len(test)} utterances ({base['audio_seconds']:.0f} s, {seen} sentences also in training); "
        "wall s: " + ", ".join(f"{k} {v:.0f}" for k, v in wall.items())
    )
    results = {
        "config": {
            "domain": args.domain, "customer_terms": CUSTOMER_TERMS, "hours": args.hours, "epochs": args.epochs,
            "batch_size": args.batch_size, "learning_rate": config["learning_rate"], "num_workers": args.num_workers,
            "device": device, "seeds": {"train": TRAIN_SEED, "val": VAL_SEED, "test": TEST_SEED, "training": args.seed},
        },
        "train": {
            "utterances": n_train, "hours": round(train_hours, 4), "val_utterances": args.val_utterances,
            "history": history,
        },
        "test": {"utterances": len(test), "audio_seconds": base["audio_seconds"], "sentences_also_in_training": seen},
        "base": {k: v for k, v in base.items() if k != "hypotheses"},
        "custom": {k: v for k, v in custom.items() if k != "hypotheses"},
        "accuracy_improvement": improvement,
        "targets": {
            "custom_wer_max": TARGET_WER,
            "custom_wer_met": custom["word_error_rate"] <= TARGET_WER,
            "accuracy_improvement_min": TARGET_IMPROVEMENT,
            "accuracy_improvement_met": improvement >= TARGET_IMPROVEMENT,
        },
        "wall_s": {k: round(v, 1) for k, v in wall.items()},
        "checkpoint": {"path": str(args.out_checkpoint), "bytes": len(tuned)},
        "samples": [
            {"reference": normalize_transcript(r), "base": b, "custom": c}
            for r, b, c in zip(test_texts, base["hypotheses"], custom["hypotheses"])
        ][:SAMPLES_KEPT],
    }
    print(f"wrote {write_results('stt_quality', results)} and {args.out_checkpoint}")
    return results


if __name__ == "__main__":
    main()
