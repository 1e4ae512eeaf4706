"""The dataset page and the annotation editor in a real browser: draw, refuse and allow overlaps,
delete, and a published set read-only."""

from __future__ import annotations

from data_pipelines.audio import encode_audio
from tests.browser import bursts_clip, open_page, screenshot
from tests.factories import upload_dataset_audio, wait_ready
from tests.test_ui_review import BURSTS


def drag(page, t0: float, t1: float) -> None:
    """Press at time t0 on the waveform and release at t1 (seconds)."""
    view = page.evaluate("window.fathomTest.visible()")
    box = page.locator(".waveform .wave").bounding_box()
    x = lambda t: view["left"] + (t - view["start"]) * view["pps"]  # noqa: E731
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(x(t0), y)
    page.mouse.down()
    page.mouse.move(x(t1), y, steps=12)
    page.mouse.up()


def test_annotation_editor_draws_overlaps_by_modifier_deletes_and_respects_published(browser, platform):
    client = platform.org("ui-annotate")
    ds = client.post("/api/v1/datasets", json={"name": "studio", "artifact_types": [{"name": "glitch"}, {"name": "noise_burst", "color": "#f79009"}]}).json()["id"]
    audio = upload_dataset_audio(client, ds, encode_audio(bursts_clip(BURSTS, 20.0), 16_000, "wav"), "take-1.wav")
    wait_ready(client, ds, 1)
    # The preprocessing run kept the page's views beside the audio.
    spec = client.get(f"/api/v1/datasets/{ds}/audio/{audio}/spectrogram", params={"start_ms": 0, "end_ms": 2000}).json()
    assert spec["frames"] == 200 and spec["bands"] == 64
    aset = client.post(f"/api/v1/datasets/{ds}/annotation-sets").json()["id"]
    annotations = lambda: [a for a in client.get(f"/api/v1/datasets/{ds}/annotation-sets/{aset}").json()["annotations"]]  # noqa: E731

    page, errors = open_page(browser, platform, client, f"/ui/datasets/{ds}")
    page.wait_for_selector("table[data-list=audio] a")
    assert "take-1.wav" in page.inner_text("table[data-list=audio]") and "v1" in page.inner_text("table[data-list=annotation-sets]")
    screenshot(page, "dataset")
    page.click("table[data-list=audio] a")
    page.wait_for_function("window.fathomTest && window.fathomTest.ready", timeout=30_000)
    page.select_option("[data-testid=type]", "noise_burst")

    drag(page, 6.0, 7.0)
    page.wait_for_function("document.querySelector('[data-testid=annotation-count]').innerText.startsWith('1 ')")
    (a,) = annotations()
    assert a["artifact_type"] == "noise_burst" and a["audio_file_id"] == audio
    assert abs(a["start_ms"] - 6000) <= 20 and abs(a["end_ms"] - 7000) <= 20

    drag(page, 7.5, 6.5)  # drawn leftwards from outside into the first: overlapping, no modifier, refused
    page.wait_for_selector("text=hold Shift while drawing")
    assert len(annotations()) == 1
    page.keyboard.down("Shift")
    drag(page, 7.5, 6.5)
    page.keyboard.up("Shift")
    page.wait_for_function("document.querySelector('[data-testid=annotation-count]').innerText.startsWith('2 ')")
    assert sorted((round(x["start_ms"] / 100), round(x["end_ms"] / 100)) for x in annotations()) == [(60, 70), (65, 75)]
    screenshot(page, "annotate")

    # Select the first and delete it with the Delete key.
    page.locator(f'[part="region {a["id"]}"]').click(position={"x": 5, "y": 10})
    page.keyboard.press("Delete")
    page.wait_for_function("document.querySelector('[data-testid=annotation-count]').innerText.startsWith('1 ')")
    assert [x["id"] for x in annotations()] != [a["id"]] and len(annotations()) == 1

    # Published: read-only; drawing adds nothing.
    assert client.post(f"/api/v1/datasets/{ds}/annotation-sets/{aset}/publish").status_code == 200
    page.reload()
    page.wait_for_function("window.fathomTest && window.fathomTest.ready", timeout=30_000)
    assert "published: read-only" in page.inner_text("main")
    drag(page, 12.0, 13.0)
    page.wait_for_timeout(500)
    assert len(annotations()) == 1 and len(page.evaluate("window.fathomTest.regions()")) == 1
    assert not errors, errors
