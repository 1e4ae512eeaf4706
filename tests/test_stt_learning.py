"""Fine-tuning the shipped base model on a small domain set really lowers its error rate,
and the custom model holds on speakers and recording conditions it never heard.

A customer's medical vocabulary (a subset of the medical terms) is spoken by the customer's
CUSTOMER_SPEAKERS voices in clean synthetic utterances; the ``medical`` base model is
fine-tuned on them with ``fit_stt`` on two Ray Train workers (default augmentation, as the
custom-model job trains) and given the word language model of its training transcripts (as
the job does), once for the module. Both are scored on held-out sentences of the
same vocabulary: spoken by the customer's speakers, and spoken by held-out speakers
(data_pipelines.stt_corpus.speaker_split: no shared accent or variant, never heard by the
base either) under the ``hard`` conditions preset (noisy rooms, telephone band, codecs).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import ray
import ray.train
import torch

from data_pipelines.condition_chain import preset
from data_pipelines.stt_corpus import customer_voices, make_utterance, speaker_split, utterance_seed
from data_pipelines.text import normalize_transcript
from train_jobs.base_models import base_checkpoint, load_base_model
from data_pipelines.stt_features import log_mel
from train_jobs.models.stt import SttDims, load_stt_checkpoint, with_language_model
from train_jobs.stt_eval import accuracy_improvement, evaluate
from train_jobs.stt_loop import checkpoint_bytes, finetune_config, fit_stt, pretrain_config
from train_jobs.stt_vocab import DOMAIN_TERMS

CUSTOMER_TERMS = DOMAIN_TERMS["medical"][:30]  # a cardiology-leaning slice of the medical list
CUSTOMER_SPEAKERS = 4
N_TRAIN, N_VAL, N_TEST = 96, 16, 40  # utterances
EPOCHS = 14
MIN_RELATIVE_WER_REDUCTION = 30.0  # percent
# percent, held-out speakers under the hard preset: a custom model from the earliest base scored
# 81.4 here, from today's base 53.9 without the language model of its transcripts and 29.6-31.1 with it
# (two runs; the base 67.7)
MAX_UNSEEN_HARD_WER = 45.0


def _set(seed: int, n: int, voices=None, conditions=None) -> list[tuple]:
    voices = voices or customer_voices(CUSTOMER_SPEAKERS)
    return [
        make_utterance(utterance_seed(seed, i), domain="medical", terms=CUSTOMER_TERMS, voices=voices, conditions=conditions)
        for i in range(n)
    ]


def _dataset(items):
    return ray.data.from_items([{"audio": w, "text": normalize_transcript(t)} for w, t in items]).materialize()


@pytest.fixture(scope="module")
def customer_model(ray_cluster, tmp_path_factory):
    """(result, fine-tuned model, its meta, base model, base meta, training items): trained once."""
    torch.set_num_threads(1)
    train = _set(501, N_TRAIN)
    result = fit_stt(
        _dataset(train),
        _dataset(_set(502, N_VAL)),
        config=finetune_config(base_checkpoint("medical"), epochs=EPOCHS, batch_size=8),
        num_workers=2,
        use_gpu=False,
        storage_path=str(tmp_path_factory.mktemp("stt-finetune")),
        run_name="stt-finetune-medical",
    )
    assert result.error is None
    texts = [normalize_transcript(t) for _, t in train]
    model, meta = load_stt_checkpoint(with_language_model(checkpoint_bytes(result.checkpoint), texts))
    return (result, model, meta, *load_base_model("medical"), train)


def test_finetuning_lowers_domain_wer(customer_model):
    result, model, meta, base_model, base_meta, train = customer_model
    test = _set(503, N_TEST)
    base = evaluate(base_model, base_meta, test)
    base_unboosted = evaluate(base_model, replace(base_meta, vocabulary=()), test)
    assert result.metrics["epoch"] == EPOCHS and result.metrics["train_utterances"] == N_TRAIN
    assert meta.base_model == "medical" and list(meta.vocabulary) == DOMAIN_TERMS["medical"]
    tuned = evaluate(model, meta, test)

    improvement = accuracy_improvement(base["word_error_rate"], tuned["word_error_rate"])
    print(
        f"\nmedical fine-tuning on {N_TRAIN} utterances ({sum(w.size for w, _ in train) / 16000 / 60:.1f} min), "
        f"{N_TEST} held out: base WER {base['word_error_rate']}% (unboosted {base_unboosted['word_error_rate']}%), "
        f"fine-tuned WER {tuned['word_error_rate']}%, CER {base['character_error_rate']}% -> "
        f"{tuned['character_error_rate']}%, improvement {improvement}%, last val WER {result.metrics['val_wer']:.1f}%"
    )
    assert tuned["character_error_rate"] < base["character_error_rate"]
    assert improvement >= MIN_RELATIVE_WER_REDUCTION


def test_custom_model_holds_on_unseen_speakers_under_hard_conditions(customer_model):
    """Fails with the base of earlier versions (trained on fewer voices, no augmentation)."""
    _, model, meta, base_model, base_meta, _ = customer_model
    held_out = speaker_split().held_out_voices
    assert not set(held_out) & set(customer_voices(CUSTOMER_SPEAKERS))
    test = _set(504, N_TEST, voices=held_out, conditions=preset("hard"))
    base, tuned = evaluate(base_model, base_meta, test), evaluate(model, meta, test)
    acoustic = evaluate(model, replace(meta, language_model=None), test)
    print(
        f"\nheld-out speakers, hard conditions, {N_TEST} utterances: base WER {base['word_error_rate']}%, "
        f"custom WER {tuned['word_error_rate']}% (CER {tuned['character_error_rate']}%), "
        f"without its language model {acoustic['word_error_rate']}%"
    )
    assert tuned["word_error_rate"] <= MAX_UNSEEN_HARD_WER
    assert tuned["word_error_rate"] < base["word_error_rate"]
    assert tuned["word_error_rate"] < acoustic["word_error_rate"]


class _RecordEpochs(ray.train.UserCallback):
    """Appends each report's epoch to a file (the Train controller runs on this host)."""

    def __init__(self, path: str):
        self.path = path

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"epoch": metrics[0]["epoch"], "step": metrics[0]["step"]}) + "\n")


def test_relaunch_resumes_after_the_last_epoch(ray_cluster, tmp_path):
    rows = []
    for i in range(12):  # precomputed log-mel rows, the pre-training input
        wave, text = make_utterance(utterance_seed(601, i))
        feats, _ = log_mel(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
        rows.append({"features": feats[0].numpy().astype(np.float16), "text": normalize_transcript(text)})
    ds = ray.data.from_items(rows).materialize()
    dims = SttDims(d_model=32, ffn_dim=64, n_layers=1, n_heads=2, subsampling_channels=8)
    record = str(tmp_path / "epochs.jsonl")
    common = dict(
        num_workers=2,
        use_gpu=False,
        storage_path=str(tmp_path),
        run_name="stt-resume",
        callbacks=[_RecordEpochs(record)],
    )
    first = fit_stt(ds, ds, config=pretrain_config(dims, epochs=1, batch_size=3), **common)
    second = fit_stt(ds, ds, config=pretrain_config(dims, epochs=2, batch_size=3), **common)
    with open(record) as f:
        reports = [json.loads(line) for line in f]
    assert [r["epoch"] for r in reports] == [1, 2]  # the relaunch trained only the missing epoch
    assert reports[1]["step"] == 2 * reports[0]["step"] == 2 * first.metrics["step"]
    assert second.metrics["epoch"] == 2 and 0 <= second.metrics["val_wer"]
    _, meta = load_stt_checkpoint(checkpoint_bytes(second.checkpoint))
    assert meta.dims == dims and meta.extra["epoch"] == 2


class _Reports(ray.train.UserCallback):
    """Appends every report's metrics to a file (the Train controller runs on this host)."""

    def __init__(self, path: str):
        self.path = path

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(metrics[0]) + "\n")


def _read_pair(waves: dict[str, np.ndarray], row) -> np.ndarray | None:
    """A stand-in for the blob store: a pair whose key it lacks no longer decodes."""
    return waves.get(row["audio_key"])


def test_workers_decode_their_own_pairs_and_train_on_every_one(ray_cluster, tmp_path):
    """Pair rows are decoded by the workers themselves; an odd count on two workers loses none (Ray
    Train's equal split would drop one); an unreadable pair is skipped and counted; the epoch-0
    report says what was usable before training, and a run with nothing to validate on trains nothing."""
    import functools

    items = [make_utterance(utterance_seed(611, i)) for i in range(10)]
    waves = {f"k{i}": w for i, (w, _) in enumerate(items)}
    rows = [{"audio_key": f"k{i}", "text": normalize_transcript(t), "type": "train"} for i, (_, t) in enumerate(items)]
    train = ray.data.from_items(rows[:7] + [{"audio_key": "gone", "text": "lost", "type": "train"}])
    val = ray.data.from_items(rows[7:])
    dims = SttDims(d_model=32, ffn_dim=64, n_layers=1, n_heads=2, subsampling_channels=8)
    record = tmp_path / "reports.jsonl"
    common = dict(
        num_workers=2, use_gpu=False, storage_path=str(tmp_path), callbacks=[_Reports(str(record))],
        read_pair=functools.partial(_read_pair, waves), max_failures=0,
    )
    result = fit_stt(train, val, config=pretrain_config(dims, epochs=2, batch_size=2), run_name="stt-pairs", **common)
    reports = [json.loads(line) for line in record.read_text().splitlines()]
    assert [r["epoch"] for r in reports] == [0, 1, 2]
    seconds = sum(waves[f"k{i}"].size for i in range(7)) / 16_000
    assert reports[0]["train_utterances"] == 7 and reports[0]["val_utterances"] == 3 and reports[0]["skipped"] == 1
    assert reports[0]["train_seconds"] == pytest.approx(seconds)
    assert all(r["train_utterances"] == 7 and r["val_utterances"] == 3 for r in reports[1:])  # every pair, every epoch
    assert result.checkpoint is not None and result.metrics["epoch"] == 2

    record.unlink()
    gone = ray.data.from_items([{"audio_key": "gone", "text": "lost", "type": "test"}])
    empty = fit_stt(train, gone, config=pretrain_config(dims, epochs=2, batch_size=2), run_name="stt-no-test", **common)
    only = [json.loads(line) for line in record.read_text().splitlines()]
    assert [r["epoch"] for r in only] == [0] and (only[0]["train_utterances"], only[0]["val_utterances"]) == (7, 0)
    assert empty.checkpoint is None  # the job fails it: no usable test audio
