"""Robustness of both model kinds: trained on clean recordings, scored on held-out recordings
under real-world conditions (``--kind detector``, the default) or on held-out speakers (``--kind stt``).

Every model is trained by the job's own loop (``make_loop_config`` + ``fit_detector`` on
file rows, as ``train_jobs.detector`` runs it) on the same clean synthetic files, whose
glitches include the 3-10 ms dropouts and lone clicks real lines produce, and is scored
event-based (as the API scores models) on held-out clips of other seeds under each
condition preset. Rows, in one run:

- ``baseline``: feature set 1 (10 ms statistics only), no augmentation, positive frames
  weighted by sqrt(neg/pos): the detector before this work;
- ``transients``: feature set 2, no augmentation, today's positive weighting;
- ``set1_augmented``: feature set 1 with the default augmentation (what augmentation alone does);
- ``augmented``: feature set 2 with the default training-time augmentation: today's default.

Prints a table per condition and class and writes bench/results/robustness.json.

``--kind stt``: one customer (``--stt-speakers`` voices of the pretraining side of
data_pipelines.stt_corpus.speaker_split, ``--stt-minutes`` of clean speech of the first 30
terms of the domain's list) fine-tunes two domain bases as the custom-model job does
(finetune_config with the job's epochs, batch size and default augmentation, fit_stt on Ray
Train workers): the shipped one and ``--previous-base`` (the general checkpoint before this
work plus the domain's word list). Each base and each custom model is scored (beam search,
vocabulary boosted, as served) on held-out speakers, whom neither the shipped base nor any
fine-tuning heard, under each STT condition, and on the customer's own speakers. Writes
bench/results/robustness_stt.json.

    python bench/robustness.py [--train-clips 48] [--test-clips 12] [--epochs 20] [--workers 2]
    python bench/robustness.py --kind stt [--stt-minutes 40] [--stt-speakers 8] [--stt-test 100]
        [--previous-base git:2a2c2eb] [--stt-domain medical]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, write_results  # noqa: E402

CONDITIONS = ("clean", "noisy", "telephone", "codecs", "real_world", "hard")
ALL_GLITCHES = ("dropout", "click", "short_dropout", "lone_click")
MODELS = {  # feature set, augmentation, positive-weight power (None: the loop's default)
    "baseline": (1, False, 0.5),
    "transients": (2, False, None),
    "set1_augmented": (1, True, None),
    "augmented": (2, True, None),
}


def file_rows(seeds, conditions=None, *, glitch_kinds=ALL_GLITCHES, clip_s: float = 15.0) -> list[dict]:
    from data_pipelines.synth import make_clip
    from train_jobs.detector_data import events_json

    rows = []
    for seed in seeds:
        clip = make_clip(seed, duration_s=clip_s, glitch_kinds=glitch_kinds, conditions=conditions)
        rows.append({"audio_id": f"clip-{seed}", "waveform": clip.waveform, "events": events_json(clip.events)})
    return rows


def train_model(name: str, train_ds, val_rows, *, epochs: int, workers: int, storage: str, augmentation: dict):
    import ray

    from data_pipelines.synth import ARTIFACT_TYPES
    from schemas.training import TrainingConfig
    from train_jobs.detector import make_loop_config
    from train_jobs.detector_loop import checkpoint_bytes, fit_detector
    from train_jobs.models.detector import load_checkpoint
    from train_jobs.windows import WindowSpec

    version, augment, pos_weight_power = MODELS[name]
    options = TrainingConfig(artifact_types=list(ARTIFACT_TYPES), epochs=epochs, augmentation={**augmentation, "enabled": augment})
    spec = WindowSpec.from_ms(options.chunk_size_ms, options.stride_ms)
    val = ray.data.from_items(val_rows)
    config = make_loop_config(options, spec, feature_version=version)
    if pos_weight_power is not None:
        config["pos_weight_power"] = pos_weight_power
    t0 = time.time()
    result = fit_detector(train_ds, val, config=config, num_workers=workers, use_gpu=False, storage_path=storage,
                          run_name=f"robustness-{name}-{int(t0)}", max_failures=0)
    data = checkpoint_bytes(result.checkpoint)
    return data, load_checkpoint(data), time.time() - t0


def score(model, meta, rows) -> dict:
    from data_pipelines.features import compute_features
    from train_jobs.detector_data import events_of
    from data_pipelines.audio import duration_ms
    from train_jobs.detection import evaluate_detector

    files = [(compute_features(r["waveform"], version=meta.feature_version), duration_ms(r["waveform"]), events_of(r["events"])) for r in rows]
    return evaluate_detector(model, meta, files)


STT_CONDITIONS = ("clean", "hard", "telephone", "noisy")  # held-out speakers under each preset
STT_TRAIN_SEED, STT_VAL_SEED, STT_TEST_SEED, STT_SEEN_SEED, STT_GENERAL_SEED = 9201, 9202, 9203, 9204, 9205  # utterance streams
STT_CUSTOMER_TERMS = 30  # leading terms of the domain's list: the customer's vocabulary
PREVIOUS_BASE_PATH = "train_jobs/base_models/general.pt"


def previous_base(spec: str, domain: str) -> bytes:
    """``git:REV`` (the general checkpoint at that revision) or a file path, given ``domain``'s word list."""
    import subprocess

    from train_jobs.base_models import with_vocabulary

    if spec.startswith("git:"):
        root = Path(__file__).resolve().parents[1]
        data = subprocess.run(["git", "-C", str(root), "show", f"{spec[4:]}:{PREVIOUS_BASE_PATH}"],
                              capture_output=True, check=True).stdout
    else:
        data = Path(spec).read_bytes()
    return with_vocabulary(data, domain)


def stt_main(args) -> None:
    import json
    import math

    import ray

    from data_pipelines.condition_chain import preset
    from data_pipelines.stt_corpus import customer_voices, make_utterance, speaker_split, utterance_seed
    from train_jobs.stt_vocab import DOMAIN_TERMS
    from schemas.augmentation import Augmentation
    from schemas.settings import Settings
    from train_jobs.base_models import base_checkpoint
    from dataclasses import replace

    from data_pipelines.text import normalize_transcript
    from train_jobs.models.stt import load_stt_checkpoint, with_language_model
    from train_jobs.stt_eval import accuracy_improvement, evaluate
    from train_jobs.stt_loop import checkpoint_bytes, finetune_config, fit_stt
    from train_jobs.stt_pretrain import synthesized

    settings = Settings()
    augmentation = Augmentation.model_validate(json.loads(args.augmentation))
    ray.init(address="local", num_cpus=args.workers + 2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    domain, voices = args.stt_domain, customer_voices(args.stt_speakers)
    terms = DOMAIN_TERMS[domain][:STT_CUSTOMER_TERMS]
    held_out = speaker_split().held_out_voices

    def items(seed, n, speakers, conditions=None):
        return [make_utterance(utterance_seed(seed, i), domain=domain, terms=terms, voices=speakers, conditions=conditions)
                for i in range(n)]

    pilot = float(np.mean([w.size / 16_000 for w, _ in items(STT_TRAIN_SEED + 99, 32, voices)]))
    n_train = math.ceil(args.stt_minutes * 60 / pilot)
    options = {"domain": domain, "terms": terms, "voices": voices}
    train_all = synthesized(n_train, STT_TRAIN_SEED, waveform=True, **options)
    train_minutes = float(train_all.sum("seconds")) / 60
    train_ds = train_all.select_columns(["audio", "text", "id"])
    val_ds = synthesized(max(16, n_train // 20), STT_VAL_SEED, **options).select_columns(["features", "text"])
    tests = {c: items(STT_TEST_SEED, args.stt_test, held_out, preset(c)) for c in STT_CONDITIONS}
    tests["seen_speakers"] = items(STT_SEEN_SEED, args.stt_test, voices)
    tests["out_of_domain"] = [make_utterance(utterance_seed(STT_GENERAL_SEED, i), voices=held_out) for i in range(args.stt_test)]
    train_texts = [normalize_transcript(t) for t in train_all.to_pandas()["text"]]  # what the job's language model learns
    known = set(train_texts)
    tests["hard_new_sentences"] = [it for it in tests["hard"] if normalize_transcript(it[1]) not in known]
    overlap = {c: sum(normalize_transcript(t) in known for _, t in tests[c]) for c in STT_CONDITIONS}
    print(f"held-out sentences also in the training transcripts: {overlap}", flush=True)
    print(f"customer: {len(voices)} speakers, {n_train} utterances ({train_minutes:.1f} min); "
          f"{len(held_out)} held-out speakers, {args.stt_test} utterances per condition", flush=True)

    bases = {"previous": lambda: previous_base(args.previous_base, domain), "shipped": lambda: base_checkpoint(domain)}
    bases = {name: bases[name]() for name in args.stt_bases.split(",")}
    saved = dict(kv.split("=", 1) for kv in args.stt_custom.split(",") if kv)
    storage = args.storage or tempfile.mkdtemp(prefix="fathom-robustness-stt-")
    runs, table = [], []
    for name, base in bases.items():
        t0 = time.time()
        custom = Path(saved[name]).read_bytes() if name in saved else None
        result = None if custom is not None else fit_stt(
            train_ds, val_ds,
            config=finetune_config(base, epochs=args.stt_epochs or settings.stt_finetune_epochs,
                                   batch_size=settings.stt_finetune_batch_size, augmentation=augmentation),
            num_workers=args.workers, use_gpu=False, storage_path=storage, run_name=f"robustness-stt-{name}", max_failures=0,
        )
        train_s = time.time() - t0
        custom = custom or checkpoint_bytes(result.checkpoint)
        if args.save_dir:
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.save_dir) / f"stt_{name}_custom.pt").write_bytes(custom)
        acoustic, meta = load_stt_checkpoint(custom)
        models = {
            f"{name}_base": load_stt_checkpoint(base),
            f"{name}_custom_acoustic": (acoustic, replace(meta, language_model=None)),  # before the language model
            f"{name}_custom": load_stt_checkpoint(with_language_model(custom, train_texts)),  # what the job ships
        }
        base_wer = {}
        for label, (model, meta) in models.items():
            for condition, test in tests.items():
                m = evaluate(model, meta, test)
                wer, cer = m["word_error_rate"], m["character_error_rate"]
                if label.endswith("_base"):
                    base_wer[condition] = wer
                gain = accuracy_improvement(base_wer[condition], wer) if not label.endswith("_base") else None
                runs.append({"model": label, "condition": condition, "word_error_rate": wer, "character_error_rate": cer,
                             "improvement_over_base": gain, "utterances": len(test),
                             "train_s": round(train_s, 1) if gain is not None and result is not None else None,
                             "samples": [{"reference": r, "hypothesis": h} for (_, r), h in zip(test[:3], m["hypotheses"][:3])]})
                table.append([label, condition, wer, cer, gain])
                print_table(["model", "condition", "WER %", "CER %", "vs base %"], table[-1:])
    print()
    print_table(["model", "condition", "WER %", "CER %", "vs base %"], table)
    setup = {"domain": domain, "customer_speakers": list(voices), "train_utterances": n_train,
             "train_minutes": round(train_minutes, 1), "test_utterances": args.stt_test, "held_out_speakers": len(held_out),
             "epochs": args.stt_epochs or settings.stt_finetune_epochs, "batch_size": settings.stt_finetune_batch_size,
             "workers": args.workers, "augmentation": augmentation.model_dump(mode="json"), "bases": args.stt_bases.split(","), "previous_base": args.previous_base, "conditions": list(tests),
             "held_out_sentences_in_training": overlap, "saved_custom": saved}
    print(f"wrote {write_results(args.result_name or 'robustness_stt', {'setup': setup, 'runs': runs})}")
    ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=("detector", "stt"), default="detector")
    p.add_argument("--train-clips", type=int, default=48)
    p.add_argument("--test-clips", type=int, default=12)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--glitch-kinds", default=",".join(ALL_GLITCHES))
    p.add_argument("--clip-s", type=float, default=15.0)
    p.add_argument("--augmentation", default="{}", help="JSON of the training augmentation options (the kind's own schema)")
    p.add_argument("--result-name", default=None, help="bench/results/<name>.json (default: robustness[_stt])")
    p.add_argument("--save-dir", help="also write each model's checkpoint here")
    p.add_argument("--storage", help="Ray Train storage directory (a re-run with the same one resumes; default: a new one)")
    p.add_argument("--stt-domain", default="medical")
    p.add_argument("--stt-minutes", type=float, default=40.0, help="minutes of the customer's fine-tuning speech")
    p.add_argument("--stt-speakers", type=int, default=8, help="voices of the customer")
    p.add_argument("--stt-test", type=int, default=100, help="held-out utterances per condition")
    p.add_argument("--stt-epochs", type=int, default=None, help="default: the custom-model job's")
    p.add_argument("--previous-base", default="git:2a2c2eb", help="git:REV or a general checkpoint file")
    p.add_argument("--stt-bases", default="previous,shipped", help="which bases to fine-tune, of previous,shipped")
    p.add_argument("--stt-custom", default="", help="NAME=PATH,...: score this saved fine-tuned checkpoint of base NAME instead of fine-tuning")
    args = p.parse_args()
    if args.kind == "stt":
        return stt_main(args)
    import json

    import ray

    from data_pipelines.condition_chain import preset
    from data_pipelines.synth import ARTIFACT_TYPES

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    clips = {"glitch_kinds": tuple(args.glitch_kinds.split(",")), "clip_s": args.clip_s}
    train_rows = file_rows(range(args.train_clips), **clips)
    val_rows = file_rows(range(5_000, 5_000 + max(2, args.train_clips // 6)), **clips)
    tests = {c: file_rows(range(10_000, 10_000 + args.test_clips), preset(c), **clips) for c in CONDITIONS}
    train_ds = ray.data.from_items(train_rows).materialize()
    storage = tempfile.mkdtemp(prefix="fathom-robustness-")

    runs, table = [], []
    for name in args.models.split(","):
        data, (model, meta), train_s = train_model(
            name, train_ds, val_rows, epochs=args.epochs, workers=args.workers, storage=storage, augmentation=json.loads(args.augmentation)
        )
        if args.save_dir:
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.save_dir) / f"{name}.pt").write_bytes(data)
        for condition, rows in tests.items():
            m = score(model, meta, rows)
            per_class = {t: round(m["per_class"][t]["f1_score"], 3) for t in ARTIFACT_TYPES}
            macro = float(np.mean(list(per_class.values())))
            runs.append({"model": name, "condition": condition, "macro_f1": round(macro, 3), "per_class_f1": per_class,
                         "per_class": m["per_class"], "event_f1": round(m["f1_score"], 3), "train_s": round(train_s, 1)})
            table.append([name, condition, macro, *per_class.values(), m["f1_score"]])
            print_table(["model", "condition", "macro F1", *ARTIFACT_TYPES, "event F1"], table[-1:])
    print()
    print_table(["model", "condition", "macro F1", *ARTIFACT_TYPES, "event F1"], table)
    setup = {"train_clips": args.train_clips, "test_clips": args.test_clips, "epochs": args.epochs, "workers": args.workers,
             "augmentation_overrides": json.loads(args.augmentation),
             "clip_s": args.clip_s, "glitch_kinds": list(clips["glitch_kinds"]), "conditions": list(CONDITIONS)}
    print(f"wrote {write_results(args.result_name or 'robustness', {'setup': setup, 'runs': runs})}")
    ray.shutdown()


if __name__ == "__main__":
    main()
