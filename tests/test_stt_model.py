"""The CTC acoustic models: shapes, front end, SpecAugment, checkpoints, the SSL encoder path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train_jobs.base_models import BASE_MODELS, base_checkpoint, checkpoint_path, load_base_model, with_vocabulary
from data_pipelines.stt_features import HOP, log_mel
from train_jobs.models.stt import (
    CtcConformer,
    SslCtc,
    SttDims,
    load_ssl_encoder,
    load_stt_checkpoint,
    save_stt_checkpoint,
    ssl_weights_path,
)
from train_jobs.stt_decoding import transcribe
from train_jobs.stt_vocab import DOMAIN_TERMS, VOCAB, encode

SMALL = SttDims(d_model=64, ffn_dim=128, n_layers=2, n_heads=2, subsampling_channels=16)
TINY_WAV2VEC2 = {
    "extractor_mode": "group_norm",
    "extractor_conv_layer_config": [
        (32, 10, 5),
        (32, 3, 2),
        (32, 3, 2),
        (32, 3, 2),
        (32, 3, 2),
        (32, 2, 2),
        (32, 2, 2),
    ],
    "extractor_conv_bias": False,
    "encoder_embed_dim": 48,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 2,
    "encoder_num_heads": 4,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 96,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": False,
    "encoder_layer_drop": 0.0,
}


def _waves(seconds, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    lengths = [int(s * 16_000) for s in seconds]
    batch = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.from_numpy(0.1 * rng.standard_normal(n).astype(np.float32))
    return batch, torch.tensor(lengths)


def test_log_mel_has_one_frame_per_10_ms():
    waves, lengths = _waves([1.0, 0.5])
    feats, frames = log_mel(waves, lengths)
    assert feats.shape == (2, 16_000 // HOP + 1, 80)
    assert frames.tolist() == [101, 51]
    assert torch.isfinite(feats).all()


def test_conformer_maps_features_to_40_ms_log_probs():
    torch.manual_seed(0)
    model = CtcConformer(SMALL).eval()
    waves, lengths = _waves([2.0, 1.3])
    feats, frames = model.featurize(waves, lengths)
    log_probs, out_lengths = model(feats, frames)
    assert log_probs.shape == (2, 51, len(VOCAB))  # ceil(ceil(201 / 2) / 2)
    assert out_lengths.tolist() == [51, 33]
    assert model.frame_shift_s == pytest.approx(0.04)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 51), atol=1e-5)
    with pytest.raises(ValueError, match="80"):
        model(torch.zeros(1, 10, 40), torch.tensor([10]))


def test_a_batch_gives_every_utterance_what_it_gets_alone():
    """Padding must not reach an utterance: not through the analysis window at its end, the
    subsampler's convolutions or the conformer's depthwise convolutions (which attention then
    spreads over the whole utterance)."""
    torch.manual_seed(0)
    model = CtcConformer(SMALL).eval()
    seconds = [2.0, 1.3, 0.7]
    waves, lengths = _waves(seconds)
    with torch.no_grad():
        batched, out_lengths = model(*model.featurize(waves, lengths))
        for i, n in enumerate(lengths.tolist()):
            alone, alone_lengths = model(*model.featurize(waves[i : i + 1, :n], lengths[i : i + 1]))
            assert int(alone_lengths[0]) == int(out_lengths[i])
            torch.testing.assert_close(batched[i, : out_lengths[i]], alone[0], rtol=1e-4, atol=1e-4)


def test_spec_augment_only_while_training():
    torch.manual_seed(0)
    model = CtcConformer(SttDims(d_model=64, ffn_dim=128, n_layers=1, n_heads=2, dropout=0.0))
    feats, frames = model.featurize(*_waves([3.0]))
    model.eval()
    a, _ = model(feats, frames)
    b, _ = model(feats, frames)
    assert torch.equal(a, b)
    model.train()  # no dropout: the masks are the only randomness
    c, _ = model(feats, frames)
    d, _ = model(feats, frames)
    assert not torch.allclose(c, d)


def test_dims_are_validated():
    with pytest.raises(ValueError, match="encoder must be one of"):
        SttDims(encoder="lstm")
    with pytest.raises(ValueError, match="divisible"):
        SttDims(d_model=100, n_heads=3)
    with pytest.raises(ValueError, match="odd"):
        SttDims(conv_kernel=4)
    with pytest.raises(ValueError, match="ssl"):
        SttDims(encoder="wav2vec2")


def test_checkpoint_round_trip_keeps_outputs_and_meta():
    torch.manual_seed(1)
    model = CtcConformer(SMALL).eval()
    data = save_stt_checkpoint(model, extra={"epoch": 3}, base_model="medical", vocabulary=["sepsis", "biopsy"])
    loaded, meta = load_stt_checkpoint(data)
    assert meta.dims == SMALL and meta.vocab == VOCAB and meta.base_model == "medical"
    assert meta.vocabulary == ("sepsis", "biopsy") and meta.extra == {"epoch": 3}
    assert not loaded.training
    feats, frames = model.featurize(*_waves([1.5]))
    with torch.no_grad():
        assert torch.equal(model(feats, frames)[0], loaded(feats, frames)[0])
        half, _ = load_stt_checkpoint(save_stt_checkpoint(model, half=True))
        assert torch.allclose(model(feats, frames)[0], half(feats, frames)[0], atol=0.05)
    assert len(save_stt_checkpoint(model, half=True)) < 0.6 * len(data)


def test_unreadable_checkpoints_are_refused():
    with pytest.raises(ValueError, match="not a readable"):
        load_stt_checkpoint(b"not a checkpoint")
    with pytest.raises(TypeError, match="CtcConformer or SslCtc"):
        save_stt_checkpoint(torch.nn.Linear(2, 2))


def test_shipped_base_models_are_small_and_carry_their_vocabulary():
    assert BASE_MODELS == ("general", "medical", "legal", "technical")
    assert sum(checkpoint_path(n).stat().st_size for n in BASE_MODELS) < 32 * 1024 * 1024  # ships in the package
    general, meta = load_base_model("general")
    assert meta.base_model == "general" and meta.vocabulary == () and meta.dims.encoder == "conformer"
    for name in BASE_MODELS[1:]:
        model, domain_meta = load_base_model(name)
        assert domain_meta.base_model == name and list(domain_meta.vocabulary) == DOMAIN_TERMS[name]
        assert domain_meta.dims == meta.dims
        # a domain base has its own weights: it continued the general one on its domain's speech
        assert any(not torch.equal(a, b) for a, b in zip(general.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="choose one of"):
        base_checkpoint("finance")


def test_with_vocabulary_keeps_the_weights_and_attaches_the_terms():
    general, _ = load_base_model("general")
    model, meta = load_stt_checkpoint(with_vocabulary(base_checkpoint("general"), "legal"))
    assert meta.base_model == "legal" and list(meta.vocabulary) == DOMAIN_TERMS["legal"]
    for (name, a), b in zip(general.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name


def test_ssl_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "wav2vec2_fairseq_base_ls960.pth"
    assert ssl_weights_path("WAV2VEC2_BASE") == expected
    with pytest.raises(FileNotFoundError, match=str(expected)):
        load_ssl_encoder("WAV2VEC2_BASE")
    expected.parent.mkdir(parents=True)
    torch.save({"unrelated.weight": torch.zeros(2)}, expected)
    with pytest.raises(ValueError, match="does not hold the weights of WAV2VEC2_BASE"):
        load_ssl_encoder("WAV2VEC2_BASE")
    with pytest.raises(ValueError, match="HUBERT_BASE"):
        load_ssl_encoder("NO_SUCH_BUNDLE")


def test_tiny_ssl_encoder_trains_decodes_and_round_trips():
    torch.manual_seed(0)
    dims = SttDims(encoder="wav2vec2", ssl=TINY_WAV2VEC2, dropout=0.0)
    model = SslCtc(dims)
    assert model.frame_shift_s == pytest.approx(0.02)
    assert not any(p.requires_grad for p in model.encoder.feature_extractor.parameters())
    waves, lengths = _waves([1.0, 0.8], seed=2)
    targets = [encode("hi there"), encode("ok")]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    model.train()
    for _ in range(6):
        log_probs, out_lengths = model(*model.featurize(waves, lengths))
        loss = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1), torch.tensor(targets[0] + targets[1]), out_lengths,
            torch.tensor([len(t) for t in targets]), blank=0, reduction="sum",
        )  # fmt: skip
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert log_probs.shape[:2] == (2, 49)  # 20 ms frames
    assert losses[-1] < losses[0]
    loaded, meta = load_stt_checkpoint(save_stt_checkpoint(model, base_model="general"))
    assert meta.dims.encoder == "wav2vec2" and meta.dims.ssl["encoder_embed_dim"] == 48
    result = transcribe(loaded, meta, waves[0, :16_000].numpy(), beam_size=4)
    assert result.duration == pytest.approx(1.0)
    assert set(result.text) <= set(VOCAB[1:])
    assert all(0.0 <= w.start <= w.end <= 1.0 for w in result.words)
