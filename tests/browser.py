"""Browser tests' parts: Debian's Chromium driven by Playwright, screenshots, and a detector whose
detections are known in advance.

The loudness detector is a real checkpoint served by the real Detector: its weights are set by
hand (the convolutions zero, so each residual block is the identity; one channel carries the
frame's log RMS; each type's logit rises with it above its own level) instead of learned, so a
synthetic clip's bursts are exactly where it detects.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tests.factories import register_detector

SCREENSHOTS = Path(__file__).parent / "artifacts" / "screenshots"


@contextmanager
def chromium() -> Iterator[Any]:
    """Playwright with Debian's Chromium, stopped on leaving (see the ``browser`` fixture)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


def launch_chromium(playwright: Any) -> Any:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise RuntimeError("Chromium is not installed: apt-get install chromium (make test's system-deps does it)")
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    return playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_page(browser: Any, platform: Any, client: Any, path: str) -> tuple[Any, list[str]]:
    """A signed-in page at ``path``, and the list its uncaught script errors are appended to."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # Signed in as the sign-in form leaves it: the key in this tab's sessionStorage.
    context.add_init_script(f"sessionStorage.setItem('fathom.apiKey', {client.key!r})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{platform.base_url}{path}")
    return page, errors


def shown(x: float) -> str:
    """A figure as the pages print it (four decimals; integers bare)."""
    return str(int(x)) if float(x).is_integer() else f"{x:.4f}"


def register_loudness_detector(settings: Any, organization_id: str, levels: dict[str, float], gain: float = 1.5) -> str:
    """A detector of ``{type: log RMS level}``: a frame's probability of a type is
    sigmoid(gain * (log RMS - level)). Returns the model id."""
    import torch

    from data_pipelines.features import FEATURE_VERSION, N_MELS, STAT_NAMES, feature_count
    from train_jobs.models.detector import DetectorDims, FrameDetector

    types = list(levels)
    model = FrameDetector(DetectorDims(n_features=feature_count(FEATURE_VERSION), n_classes=len(types))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for block in model.convs:
            block.norm.weight.fill_(1.0)  # BN(0) = 0 in eval: the block adds nothing
        model.proj.weight[0, N_MELS + STAT_NAMES.index("log_rms"), 0] = 1.0
        for k, t in enumerate(types):
            model.head_local.weight[k, 0] = gain
            model.head_local.bias[k] = -gain * levels[t]
    return register_detector(settings, organization_id, types, model=model, name="loudness")


def bursts_clip(bursts: list[tuple[float, float, float]], duration_s: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """Silence with Gaussian noise bursts ``(start_s, end_s, rms)``."""
    rng = np.random.default_rng(seed)
    wave = np.zeros(int(duration_s * rate), dtype=np.float32)
    for start, end, rms in bursts:
        a, b = int(start * rate), int(end * rate)
        wave[a:b] = np.clip(rng.normal(0.0, rms, b - a), -0.99, 0.99)
    return wave
