"""Make Fathom's base models from the synthetic speech corpus: ``general``, then each domain's.

    python -m train_jobs.stt_pretrain --out train_jobs/base_models/general.pt \
        [--hours H --epochs E --num-workers N]
    python -m train_jobs.stt_pretrain --out train_jobs/base_models/medical.pt \
        --domain medical --from train_jobs/base_models/general.pt [--hours H --epochs E]
    python -m train_jobs.stt_pretrain --out train_jobs/base_models/general.pt --evaluate-only

A domain base continues the general one on sentences full of that domain's terms (every
other utterance a general sentence, so it keeps general English) and carries the terms as
its boosted vocabulary: its acoustic model has heard the words, not only its decoder.

Ray Data synthesises general-English utterances (data_pipelines.stt_corpus, no domain
terms) and computes their log-mel features; Ray Train fits a CtcConformer with CTC
(train_jobs.stt_loop). The final weights are stored as float16 and those are scored
on held-out general sentences and on each domain (base model with and without that
domain's vocabulary boosted); the figures go to a JSON file beside the checkpoint.
Utterance seeds are disjoint per split: train = stream seed, validation seed+1, test
seed+2, domain tests seed+3, held-out speaker tests seed+4. Speakers are split too
(data_pipelines.stt_corpus.speaker_split): training and validation speak with the
pretraining voices only, so the held-out speaker tests measure voices the base never heard,
clean and under the ``hard`` conditions preset. Training is augmented afresh every epoch
(``--augmentation``, default PRETRAIN_AUGMENTATION); with waveform families on, the training
split keeps float16 waveforms (twice the object-store bytes of its features) for the loop to
perturb and featurise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import ray
import ray.train
import torch

from data_pipelines.condition_chain import preset
from data_pipelines.stt_corpus import make_utterance, speaker_split, utterance_seed
from data_pipelines.text import normalize_transcript
from schemas.augmentation import Augmentation, CodecAugment, NoiseAugment, TelephoneAugment
from data_pipelines.stt_features import log_mel
from train_jobs.models.stt import SttDims, load_stt_checkpoint, save_stt_checkpoint
from train_jobs.stt_decoding import BEAM_SIZE, CHAR_BONUS, WORD_BONUS
from train_jobs.stt_eval import evaluate
from train_jobs.stt_loop import AUGMENTATION_HELP, augmentation_arg, checkpoint_bytes, finetune_config, fit_stt, pretrain_config
from train_jobs.stt_vocab import DOMAIN_TERMS, DOMAINS

SYNTH_BATCH = 32  # utterances per Ray Data synthesis task
PILOT_UTTERANCES = 64  # utterances measured to turn --hours into an utterance count
DOMAIN_LEARNING_RATE = 5e-4  # AdamW peak when a domain base continues from the general one
# A base must hear rooms, lines and codecs its fine-tuning data may lack: noise on half the
# utterances at 8-30 dB SNR, a telephone band on a third, a lossy codec on a third.
PRETRAIN_AUGMENTATION = Augmentation(
    noise=NoiseAugment(probability=0.5, snr_db=(8.0, 30.0)),
    telephone=TelephoneAugment(probability=0.3),
    codec=CodecAugment(probability=0.3),
)


def synthesize_batch(
    batch: dict,
    *,
    seed: int,
    domain: str | None = None,
    terms: Sequence[str] | None = None,
    voices: Sequence[str] | None = None,
    waveform: bool = False,
) -> dict:
    """Ray Data map_batches: {"id"} -> {"features" float16 [T, 80], "text", "seconds"}
    (``waveform``: {"audio" float16 [n], "text", "seconds", "id"} instead of features).
    ``voices`` None: the pretraining voices; ``domain``/``terms`` as for make_utterance."""
    inputs, texts, seconds = [], [], []
    voices = speaker_split().train_voices if voices is None else voices
    for i in batch["id"]:
        wave, text = make_utterance(utterance_seed(seed, int(i)), domain=domain, terms=terms, voices=voices)
        if waveform:
            inputs.append(wave.astype(np.float16))
        else:
            f, _ = log_mel(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
            inputs.append(f[0].numpy().astype(np.float16))
        texts.append(normalize_transcript(text))
        seconds.append(wave.size / 16_000)
    out = {"text": np.array(texts, dtype=object), "seconds": np.array(seconds)}
    if waveform:
        return {"audio": inputs, "id": np.array([f"{seed}-{int(i)}" for i in batch["id"]], dtype=object), **out}
    return {"features": inputs, **out}


def synthesized(n: int, seed: int, *, waveform: bool = False, **options):
    """Utterances 0..n-1 of stream ``seed`` as a materialised Ray dataset (options: synthesize_batch's)."""
    return (
        ray.data.range(n, override_num_blocks=max(1, math.ceil(n / SYNTH_BATCH)))
        .map_batches(synthesize_batch, batch_size=SYNTH_BATCH, fn_kwargs={"seed": seed, "waveform": waveform, **options})
        .materialize()
    )


class _History(ray.train.UserCallback):
    """Appends rank 0's metrics of every report to a JSON-lines file (the controller runs on this host)."""

    def __init__(self, path: str):
        self.path = path

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({k: v for k, v in metrics[0].items() if isinstance(v, (int, float))}) + "\n")


def _items(n: int, seed: int, domain: str | None, *, held_out: bool = False, conditions=None) -> list[tuple[np.ndarray, str]]:
    split = speaker_split()
    voices = split.held_out_voices if held_out else split.train_voices
    return [make_utterance(utterance_seed(seed, i), domain=domain, voices=voices, conditions=conditions) for i in range(n)]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train_jobs.stt_pretrain", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument("--hours", type=float, default=3.0, help="hours of synthetic training speech")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers (0: in this process)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=16, help="utterances per worker and step")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--layers", type=int, default=SttDims.n_layers)
    p.add_argument("--d-model", type=int, default=SttDims.d_model)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-utterances", type=int, default=150)
    p.add_argument("--test-utterances", type=int, default=300)
    p.add_argument("--domain-test-utterances", type=int, default=100)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--augmentation", type=augmentation_arg, default=PRETRAIN_AUGMENTATION, help=AUGMENTATION_HELP)
    p.add_argument("--storage-path", default=None, help="Ray Train storage (default: a temporary directory)")
    p.add_argument("--evaluate-only", action="store_true", help="score the existing --out checkpoint again")
    p.add_argument("--domain", choices=DOMAINS, default=None,
                   help="make that domain's base: continue --from on its sentences, every other one general")
    p.add_argument("--from", dest="start", type=Path, default=None, help="checkpoint to continue from (with --domain)")
    args = p.parse_args(argv)
    if (args.domain is None) != (args.start is None) and not args.evaluate_only:
        p.error("--domain and --from go together")
    return args


def score(model, meta, args: argparse.Namespace) -> dict:
    """WER/CER on held-out general sentences, and per domain with and without its terms boosted."""
    test = _items(args.test_utterances, args.seed + 2, None)
    general = {k: v for k, v in evaluate(model, meta, test).items() if k != "hypotheses"}
    greedy = evaluate(model, meta, test, beam_size=1)
    unseen = {
        condition: {
            k: v
            for k, v in evaluate(
                model, meta, _items(args.test_utterances, args.seed + 4, None, held_out=True, conditions=preset(condition))
            ).items()
            if k != "hypotheses"
        }
        for condition in ("clean", "hard")
    }
    domains = {}
    for d in DOMAINS:
        items = _items(args.domain_test_utterances, args.seed + 3, d)
        plain = evaluate(model, meta, items)
        boosted = evaluate(model, meta, items, boost_terms=DOMAIN_TERMS[d])
        domains[d] = {
            "word_error_rate": plain["word_error_rate"],
            "word_error_rate_boosted": boosted["word_error_rate"],
            "character_error_rate": plain["character_error_rate"],
        }
    return {
        "general_test": general,
        "general_test_greedy_wer": greedy["word_error_rate"],
        "held_out_speakers": unseen,
        "domain_test": domains,
        "decoding": {"beam_size": BEAM_SIZE, "char_bonus": CHAR_BONUS, "word_bonus": WORD_BONUS},
    }


def _start_ray(args: argparse.Namespace) -> None:
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:  # a cluster of our own, never a stray local one; spare logical CPUs keep Data beside Train
        cpus = math.ceil(max(1, args.num_workers) * args.cpus_per_worker) + 2
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False


def train(args: argparse.Namespace) -> tuple[bytes, dict]:
    """(float16 checkpoint bytes, training summary)."""
    t0 = time.time()
    _start_ray(args)
    pilot = np.mean([w.size / 16_000 for w, _ in _items(PILOT_UTTERANCES, args.seed + 2, None)])
    n_train = max(SYNTH_BATCH, round(args.hours * 3600 / pilot))
    waveforms = args.augmentation.uses_waveform
    if args.domain is None:
        train_ds, val_ds = synthesized(n_train, args.seed, waveform=waveforms), synthesized(args.val_utterances, args.seed + 1)
    else:  # half domain sentences, half general ones of a stream the general base never heard
        half = (n_train + 1) // 2
        train_ds = synthesized(half, args.seed, waveform=waveforms, domain=args.domain).union(
            synthesized(n_train - half, args.seed + 5, waveform=waveforms)
        ).materialize()
        val_ds = synthesized(args.val_utterances, args.seed + 1, domain=args.domain)
    train_hours = float(train_ds.sum("seconds")) / 3600
    t_data = time.time()
    print(f"corpus: {n_train} utterances, {train_hours:.2f} h, in {t_data - t0:.0f} s", flush=True)

    if args.domain is None:
        dims = SttDims(d_model=args.d_model, ffn_dim=4 * args.d_model, n_layers=args.layers)
        config = pretrain_config(dims, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, augmentation=args.augmentation)
    else:
        start = args.start.read_bytes()
        dims = load_stt_checkpoint(start)[1].dims
        config = finetune_config(
            start, epochs=args.epochs, batch_size=args.batch_size, learning_rate=DOMAIN_LEARNING_RATE, seed=args.seed,
            base_model=args.domain, vocabulary=DOMAIN_TERMS[args.domain], augmentation=args.augmentation,
        )
    if args.learning_rate:
        config["learning_rate"] = args.learning_rate
    storage = args.storage_path or tempfile.mkdtemp(prefix="fathom-stt-pretrain-")
    history_path = os.path.join(storage, "history.jsonl")
    result = fit_stt(
        train_ds.select_columns(["audio", "text", "id"] if waveforms else ["features", "text"]),
        val_ds.select_columns(["features", "text"]),
        config=config,
        num_workers=args.num_workers,
        use_gpu=args.use_gpu,
        storage_path=storage,
        run_name=f"stt-{args.domain or 'general'}-{args.seed}",
        cpus_per_worker=args.cpus_per_worker,
        callbacks=[_History(history_path)],
    )
    history = []
    if os.path.exists(history_path):
        with open(history_path) as f:
            history = [{k: round(v, 4) for k, v in json.loads(line).items()} for line in f]
    model, _ = load_stt_checkpoint(checkpoint_bytes(result.checkpoint))
    summary = {
        "dims": asdict(dims),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_utterances": n_train,
        "train_hours": round(train_hours, 3),
        "epochs": args.epochs,
        "adapted_from": str(args.start) if args.start else None,
        "augmentation": args.augmentation.model_dump(mode="json"),
        "num_workers": args.num_workers,
        "corpus_seconds": round(t_data - t0),
        "train_seconds": round(time.time() - t_data),
        "history": history,
    }
    extra = {k: summary[k] for k in ("train_hours", "train_utterances", "epochs", "parameters")}
    name, vocabulary = (args.domain, DOMAIN_TERMS[args.domain]) if args.domain else ("general", ())
    return save_stt_checkpoint(model, extra=extra, base_model=name, vocabulary=vocabulary, half=True), summary


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    summary_path = args.out.with_suffix(".json")
    if args.evaluate_only:
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    else:
        data, summary = train(args)
        summary["command"] = "python -m train_jobs.stt_pretrain " + " ".join(argv if argv is not None else sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(data)
        summary["checkpoint_bytes"] = len(data)
    t0 = time.time()
    model, meta = load_stt_checkpoint(args.out.read_bytes())  # score exactly what is shipped (float16 weights)
    summary.update(score(model, meta, args))
    summary["eval_seconds"] = round(time.time() - t0)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2), flush=True)
    return summary


if __name__ == "__main__":
    main()
