"""Fathom's shipped speech-to-text base models.

``general`` is an acoustic model trained from scratch on synthetic English speech
(recipe and figures: README.md beside this file). ``medical``, ``legal`` and ``technical``
are the same weights with that domain's vocabulary (data_pipelines.stt_corpus.DOMAIN_TERMS)
attached: the decoder boosts those terms, and fine-tuning a custom model from one of them
keeps the vocabulary in the custom model's checkpoint.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from torch import nn

from data_pipelines.stt_corpus import DOMAIN_TERMS
from train_jobs.models.stt import SttMeta, load_stt_checkpoint, save_stt_checkpoint

BASE_MODELS = ("general", *DOMAIN_TERMS)
GENERAL_CHECKPOINT = Path(__file__).with_name("general.pt")


def _check(name: str) -> None:
    if name not in BASE_MODELS:
        raise ValueError(f"unknown base model {name!r}; choose one of {BASE_MODELS}")


@lru_cache(maxsize=len(BASE_MODELS))
def base_checkpoint(name: str) -> bytes:
    """Checkpoint bytes of base model ``name`` (its meta names it and holds its vocabulary)."""
    _check(name)
    if not GENERAL_CHECKPOINT.is_file():
        raise FileNotFoundError(f"the general base model is missing at {GENERAL_CHECKPOINT}; see README.md there")
    data = GENERAL_CHECKPOINT.read_bytes()
    if name == "general":
        return data
    model, meta = load_stt_checkpoint(data)
    return save_stt_checkpoint(model, extra=dict(meta.extra), base_model=name, vocabulary=DOMAIN_TERMS[name], half=True)


def load_base_model(name: str, map_location: str = "cpu") -> tuple[nn.Module, SttMeta]:
    """(model in eval mode, meta) of base model ``name``."""
    return load_stt_checkpoint(base_checkpoint(name), map_location=map_location)
