"""One GPU decision for training and serving: the job's choice, then the settings, then the cluster."""

from __future__ import annotations

import ray

from cluster.gpus import use_gpu
from schemas.settings import Settings


def test_the_job_then_the_settings_then_the_cluster_decide(ray_cluster):
    cluster_has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    assert use_gpu(Settings()) is cluster_has_gpus
    assert use_gpu(Settings(use_gpu=True)) is True and use_gpu(Settings(use_gpu=False)) is False
    assert use_gpu(Settings(use_gpu=False), True) is True and use_gpu(Settings(use_gpu=True), False) is False
