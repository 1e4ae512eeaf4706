"""Training progress into the job record, from the Ray Train controller."""

from __future__ import annotations

import logging
from typing import Any

import ray.train

from cluster.training import report_progress

log = logging.getLogger("fathom.train.progress")


EPOCH_FIGURES = {"train_loss": "train loss", "val_loss": "validation loss", "val_frame_f1": "validation frame F1"}


def epoch_summary(epoch: int, epochs: int, metrics: dict[str, Any]) -> str:
    """``epoch 3/20: train loss 0.1234, validation loss 0.2345, validation frame F1 0.812``."""
    shown = [f"{label} {metrics[k]:.4g}" for k, label in EPOCH_FIGURES.items() if isinstance(metrics.get(k), float)]
    return ": ".join([f"epoch {epoch}/{epochs}", ", ".join(shown)]) if shown else f"epoch {epoch}/{epochs}"


class ProgressCallback(ray.train.UserCallback):
    """Maps epoch e of n onto [start, end] percent and stores rank 0's metrics.

    Runs in the controller: a database hiccup is logged, never raised (raising would
    fail the training run over bookkeeping).
    """

    def __init__(self, database_url: str, job_id: str, *, epochs: int, start: float = 5.0, end: float = 90.0):
        self.database_url = database_url
        self.job_id = job_id
        self.epochs = epochs
        self.start = start
        self.end = end

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        m = dict(metrics[0]) if metrics else {}
        epoch = int(m.get("epoch", 0))
        progress = self.start + (self.end - self.start) * epoch / max(self.epochs, 1)
        clean = {k: float(v) if isinstance(v, (int, float)) else v for k, v in m.items() if isinstance(v, (int, float, str))}
        try:
            report_progress(
                self.database_url, self.job_id, progress=progress, epoch=epoch, metrics=clean, message=epoch_summary(epoch, self.epochs, clean)
            )
        except Exception:
            log.exception("could not record progress of training job %s", self.job_id)
