"""Pure pieces of the STT training job: phases, the test split, the SSL starting point, CLI."""

from __future__ import annotations

import pytest

from cluster.custom_models import DataPair
from data_pipelines.stt_preprocess import split_pairs
from train_jobs.base_models import base_checkpoint
from schemas.augmentation import Augmentation
from train_jobs.stt import describe_augmentation, epoch_phase, parse_args, ssl_start, training_texts


def _pairs(kinds: str) -> list[DataPair]:
    return [DataPair("train" if k == "r" else "test", f"custom_models/1/audio/{i}", f"text {i}", 2.0) for i, k in enumerate(kinds)]


def test_epoch_phases_follow_the_documented_ranges():
    assert epoch_phase(1, 20) == (14.0, "Initial training epochs")
    assert epoch_phase(5, 20) == (30.0, "Initial training epochs")
    assert epoch_phase(6, 20) == (34.0, "Main training")
    assert epoch_phase(15, 20) == (70.0, "Main training")
    assert epoch_phase(16, 20) == (74.0, "Fine-tuning")
    assert epoch_phase(20, 20) == (90.0, "Fine-tuning")
    assert epoch_phase(1, 1)[0] == 90.0


def test_uploaded_test_pairs_are_the_test_set():
    pairs = _pairs("rrtrt")
    train, test = split_pairs(pairs, holdout_fraction=0.5, seed=0)
    assert [p.type for p in train] == ["train"] * 3 and [p.audio_key for p in test] == [pairs[2].audio_key, pairs[4].audio_key]


def test_the_language_model_learns_only_training_transcripts():
    pairs = [DataPair("train", "k/1", "Take 20 mg of Aspirin.", 2.0), DataPair("train", "k/2", "日本語", 2.0)]
    train, test = split_pairs([*pairs, DataPair("test", "k/3", "held out words", 2.0)], holdout_fraction=0.1, seed=0)
    assert training_texts(train) == ["take twenty mg of aspirin"]  # normalised; unspeakable skipped
    assert "held" not in " ".join(training_texts(train))


def test_without_test_pairs_a_seeded_holdout_is_disjoint_and_never_empty():
    pairs = _pairs("r" * 30)
    train, test = split_pairs(pairs, holdout_fraction=0.1, seed=3)
    assert len(test) == 3 and len(train) == 27 and not {p.audio_key for p in train} & {p.audio_key for p in test}
    assert split_pairs(pairs, holdout_fraction=0.1, seed=3) == (train, test)  # reproducible
    assert split_pairs(pairs, holdout_fraction=0.1, seed=4) != (train, test)
    train, test = split_pairs(_pairs("rr"), holdout_fraction=0.01, seed=0)
    assert len(train) == len(test) == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_pairs(_pairs("r"), holdout_fraction=0.1, seed=0)


def test_ssl_start_uses_only_local_weights(tmp_path, monkeypatch):
    base = base_checkpoint("medical")
    assert ssl_start(base, None) is base
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        ssl_start(base, "WAV2VEC2_BASE")


def test_cli_shapes():
    args = parse_args(["finetune", "--model-id", "7", "--epochs", "3", "--no-use-gpu"])
    assert (args.model_id, args.epochs, args.use_gpu, args.num_workers) == (7, 3, False, None)
    assert parse_args(["pretrain", "--out", "x.pt", "--hours", "1"]).rest == ["--out", "x.pt", "--hours", "1"]
    with pytest.raises(SystemExit):
        parse_args(["finetune"])
    with pytest.raises(SystemExit):
        parse_args(["finetune", "--model-id", "7", "--bogus"])


def test_cli_augmentation_option():
    assert parse_args(["finetune", "--model-id", "7"]).augmentation == Augmentation()
    args = parse_args(["finetune", "--model-id", "7", "--augmentation", '{"enabled": false}'])
    assert not args.augmentation.enabled and describe_augmentation(args.augmentation).startswith("Augmentation off")
    args = parse_args(["finetune", "--model-id", "7", "--augmentation", '{"codec": null, "noise": {"snr_db": [5, 9]}}'])
    assert args.augmentation.codec is None and args.augmentation.noise.snr_db == (5.0, 9.0)
    assert describe_augmentation(args.augmentation).endswith("speed, noise, telephone, gain, spec_augment")
    for bad in ('{"noise": {"snr_db": [9, 5]}}', "{not json", '{"speed": {"factor": [0.1, 1.0]}}'):
        with pytest.raises(SystemExit):
            parse_args(["finetune", "--model-id", "7", "--augmentation", bad])
