"""Fathom's shipped speech-to-text base models, one checkpoint file each (model card: README.md here).

``general`` is an acoustic model trained from scratch on synthetic English speech of 456
voices under augmentation. ``medical``, ``legal`` and ``technical`` continue it on
sentences full of that domain's terms (train_jobs.stt_vocab.DOMAIN_TERMS) and carry
those terms as their vocabulary: the decoder boosts them, and fine-tuning a custom model
from one of them keeps the vocabulary in the custom model's checkpoint. The recipe of each
is train_jobs.stt_pretrain; its figures are in the ``<name>.json`` beside the checkpoint.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from torch import nn

from train_jobs.stt_vocab import DOMAIN_TERMS
from train_jobs.models.stt import SttMeta, load_stt_checkpoint, save_stt_checkpoint

BASE_MODELS = ("general", *DOMAIN_TERMS)
CHECKPOINT_DIR = Path(__file__).parent


def _check(name: str) -> None:
    if name not in BASE_MODELS:
        raise ValueError(f"unknown base model {name!r}; choose one of {BASE_MODELS}")


def checkpoint_path(name: str) -> Path:
    _check(name)
    return CHECKPOINT_DIR / f"{name}.pt"


@lru_cache(maxsize=len(BASE_MODELS))
def base_checkpoint(name: str) -> bytes:
    """Checkpoint bytes of base model ``name`` (its meta names it and holds its vocabulary)."""
    path = checkpoint_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"the {name} base model is missing at {path}; see README.md there")
    return path.read_bytes()


def with_vocabulary(general: bytes, name: str) -> bytes:
    """A ``general`` checkpoint with domain ``name``'s terms attached and its weights unchanged:
    how earlier versions made their domain bases (the robustness benchmark's baseline)."""
    _check(name)
    model, meta = load_stt_checkpoint(general)
    return save_stt_checkpoint(model, extra=dict(meta.extra), base_model=name, vocabulary=DOMAIN_TERMS[name], half=True)


def load_base_model(name: str, map_location: str = "cpu") -> tuple[nn.Module, SttMeta]:
    """(model in eval mode, meta) of base model ``name``."""
    return load_stt_checkpoint(base_checkpoint(name), map_location=map_location)
