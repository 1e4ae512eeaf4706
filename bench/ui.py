"""The review page on an hour of audio: a 60-minute file with 3,000 detections in headless Chromium.

A real local Fathom processes the file (a loudness detector, so the 3,000 detections are known);
the page is then opened through Playwright in Debian's Chromium and measured in one run: time
from navigation to the first regions drawn, the peaks payload the page downloads, and frame
times (requestAnimationFrame intervals) while zooming in step by step and while scrolling the
zoomed view across the file. Targets on a 2-core machine: first regions < 2 s, frames < 50 ms.
Prints a table and writes bench/results/ui.json.

    python bench/ui.py [--minutes 60] [--detections 3000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, start_local_platform, write_results  # noqa: E402

FRAME_RECORDER = """
window.__frames = [];
window.__recording = false;
(function loop(last) {
  requestAnimationFrame((t) => { if (window.__recording) window.__frames.push(t - last); loop(t); });
})(performance.now());
(function firstRegion() {
  const t = window.fathomTest && window.fathomTest.regions && window.fathomTest.regions().length;
  if (t) { window.__firstRegionMs = performance.now(); return; }
  requestAnimationFrame(firstRegion);
})();
"""


def frame_stats(frames: list[float]) -> dict[str, float]:
    frames = sorted(frames)
    if not frames:
        return {"frames": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    return {"frames": len(frames), "p50_ms": round(statistics.median(frames), 1),
            "p95_ms": round(frames[min(len(frames) - 1, int(0.95 * len(frames)))], 1), "max_ms": round(frames[-1], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--detections", type=int, default=3000)
    args = p.parse_args()

    import shutil

    from playwright.sync_api import sync_playwright
    from ray import serve

    from data_pipelines.audio import encode_audio
    from serve_app.app import APP_NAME, AppArgs, build_app
    from tests.browser import bursts_clip, launch_chromium, register_loudness_detector
    from tests.factories import Client, upload_inference_file, wait_for

    duration_s = args.minutes * 60
    period = duration_s / args.detections
    bursts = [(i * period + 0.2, i * period + 0.2 + min(0.3, period / 3), 0.05) for i in range(args.detections)]
    data = encode_audio(bursts_clip(bursts, duration_s), 16_000, "flac")

    local = start_local_platform(ui_test_hooks=True)
    serve.run(build_app(AppArgs(settings=local.overrides)), name=APP_NAME, route_prefix="/")
    c = Client(local.base_url, local.key, org_id=local.organization_id)
    model = register_loudness_detector(local.settings, local.organization_id, {"noise_burst": -4.2})
    job = c.post("/api/v1/inference-jobs", json={"model_id": model}).json()["id"]
    started = time.perf_counter()
    file_id = upload_inference_file(c, job, data, "hour.flac")
    base = f"/api/v1/inference-jobs/{job}/files/{file_id}"
    wait_for(lambda: c.get(base).json()["status"] in ("completed", "failed"), timeout=1800, interval=2, what="hour processed")
    processed_s = time.perf_counter() - started
    f = c.get(base).json()
    assert f["status"] == "completed", f["error_message"]
    print(f"processed {duration_s / 60:.0f} min in {processed_s:.1f} s: {f['detection_count']} detections")

    peaks_bytes: list[int] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(f"sessionStorage.setItem('fathom.apiKey', {local.key!r});" + FRAME_RECORDER)
        page = context.new_page()
        page.on("response", lambda r: peaks_bytes.append(len(r.body())) if "/peaks" in r.url and r.ok else None)
        page.goto(f"{local.base_url}/ui/inference-jobs/{job}/files/{file_id}")
        page.wait_for_function("window.fathomTest && window.fathomTest.ready", timeout=60_000)
        page.wait_for_function("window.__firstRegionMs !== undefined", timeout=60_000)
        first_region_ms = page.evaluate("window.__firstRegionMs")
        drawn = page.evaluate("window.fathomTest.regions().length")

        page.evaluate("window.__frames = []; window.__recording = true")
        for step in range(1, 31):  # zoom in from the first view to about 1,000 px/s
            page.eval_on_selector("[data-testid=zoom]", f"el => {{ el.value = {0.3 + step * 0.02}; el.dispatchEvent(new Event('input')); }}")
            page.wait_for_timeout(60)
        zoom = frame_stats(page.evaluate("window.__recording = false; window.__frames"))
        page.evaluate("window.__frames = []; window.__recording = true")
        width = page.evaluate("window.fathomTest.ws.getWrapper().scrollWidth")
        for step in range(1, 61):  # scroll the zoomed view across the file
            page.evaluate(f"window.fathomTest.ws.setScroll({int(width * step / 61)})")
            page.wait_for_timeout(50)
        scroll = frame_stats(page.evaluate("window.__recording = false; window.__frames"))
        regions_after = page.evaluate("window.fathomTest.regions().length")
        browser.close()

    results = {
        "audio_minutes": args.minutes, "detections": f["detection_count"], "processing_s": round(processed_s, 1),
        "first_regions_ms": round(first_region_ms), "regions_first_view": drawn, "regions_after_scroll": regions_after,
        "peaks_bytes": max(peaks_bytes) if peaks_bytes else None, "zoom_frames": zoom, "scroll_frames": scroll,
        "chromium": shutil.which("chromium"), "cpus": os.cpu_count(),
    }
    print_table(["measure", "value", "target"], [
        ["time to first regions (ms)", results["first_regions_ms"], "< 2000"],
        ["peaks payload (bytes)", results["peaks_bytes"], "< 1,000,000"],
        ["regions drawn (first view / after scroll)", f"{drawn} / {regions_after}", f"of {f['detection_count']}"],
        ["zoom frames p50 / p95 / max (ms)", f"{zoom['p50_ms']} / {zoom['p95_ms']} / {zoom['max_ms']}", "< 50"],
        ["scroll frames p50 / p95 / max (ms)", f"{scroll['p50_ms']} / {scroll['p95_ms']} / {scroll['max_ms']}", "< 50"],
    ])
    print(write_results("ui", results))
    serve.shutdown()


if __name__ == "__main__":
    main()
