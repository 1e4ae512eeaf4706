"""Training progress into the job record, from the Ray Train controller."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray.train

from cluster.training import report_progress

log = logging.getLogger("fathom.train.progress")


# Ray Train V2's controller takes reports off a queue of one at each health check (every 2 s by
# default), and a worker's next report waits for that: a 2.4 s epoch took 4 or 6 s. The driver's
# value propagates to the controller and workers; one set by the user wins.
HEALTH_CHECK_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
REPORT_POLL_S = 0.25  # s between the controller's collections of reports


def collect_reports_promptly() -> None:
    """Before a trainer is made in this driver: the controller collects each epoch's report within REPORT_POLL_S."""
    os.environ.setdefault(HEALTH_CHECK_ENV, str(REPORT_POLL_S))


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
