"""Whether work asks Ray for GPUs: the one place that decides it, for training and serving."""

from __future__ import annotations

import ray

from schemas.settings import Settings


def use_gpu(settings: Settings, requested: bool | None = None) -> bool:
    """A job's own choice, else ``settings.use_gpu``, else whether the cluster has GPUs.

    Asking for a GPU on a GPU-less cluster would leave the workers or replicas pending
    forever, so the default follows the cluster. Connects to ``settings.ray_address`` (or
    the running cluster) when this process is not yet a Ray driver.
    """
    if requested is not None:
        return requested
    if settings.use_gpu is not None:
        return settings.use_gpu
    if not ray.is_initialized():
        ray.init(address=settings.ray_address or "auto")
    return ray.cluster_resources().get("GPU", 0) > 0
