"""The review page in a real browser against the real platform: regions, seeking, filters, the
keyboard, reviews through the API, and a reviewed file sent to a dataset as draft annotations."""

from __future__ import annotations

import pytest

from data_pipelines.audio import encode_audio
from tests.browser import bursts_clip, open_page, register_loudness_detector, screenshot
from tests.factories import upload_inference_file, wait_for

LEVELS = {"noise_burst": -4.2, "loud": -2.0}
BURSTS = [(1.0, 1.5, 0.03), (3.0, 3.4, 0.3), (5.0, 5.6, 0.05), (8.0, 8.3, 0.3), (11.0, 11.5, 0.08), (15.0, 15.8, 0.3)]
COLORS = {"noise_burst": "#f79009", "loud": "#7a5af8"}


@pytest.fixture(scope="module")
def reviewed_file(platform):
    client = platform.org("ui-review")
    model = register_loudness_detector(platform.settings, client.org_id, LEVELS)
    dataset = client.post("/api/v1/datasets", json={
        "name": "calls", "artifact_types": [{"name": t, "color": c} for t, c in COLORS.items()]}).json()["id"]
    job = client.post("/api/v1/inference-jobs", json={"model_id": model}).json()["id"]
    wav = encode_audio(bursts_clip(BURSTS, 20.0), 16_000, "wav")
    file_id = upload_inference_file(client, job, wav, "support-call.wav")
    base = f"/api/v1/inference-jobs/{job}/files/{file_id}"
    wait_for(lambda: client.get(base).json()["status"] == "completed", timeout=180, what="file processed")
    detections = client.get(base).json()["detections"]
    # The loudness detector finds every burst, and the loud type only the loud ones.
    assert [(d["artifact_type"], d["start_ms"]) for d in detections if d["artifact_type"] == "loud"] == [("loud", 3000), ("loud", 8000), ("loud", 15000)]
    assert len(detections) == 9
    return {"client": client, "job": job, "file": file_id, "base": base, "dataset": dataset, "detections": detections}


def test_sign_in_keeps_the_key_in_the_tab_and_lists_paginate(browser, platform, reviewed_file):
    client = reviewed_file["client"]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{platform.base_url}/ui/inference-jobs")
    page.fill("input[name=api_key]", "fth_not-a-key")
    page.click("button[type=submit]")
    page.wait_for_selector("text=That key was not accepted.")
    screenshot(page, "sign-in")
    page.fill("input[name=api_key]", client.key)
    page.click("button[type=submit]")
    page.wait_for_selector("table[data-list=inference-jobs] tbody tr td a")
    assert reviewed_file["job"][:8] in page.inner_text("table[data-list=inference-jobs]")
    assert client.key not in page.url and client.key not in page.evaluate("document.cookie")
    assert page.evaluate("sessionStorage.getItem('fathom.apiKey')") == client.key
    assert page.evaluate("localStorage.length") == 0
    screenshot(page, "inference-jobs")
    # A filter goes into the URL and the API's answer: no completed job is 'failed'.
    page.select_option("select[name=status]", "failed")
    page.wait_for_url("**status=failed**")
    page.wait_for_selector("text=Nothing here yet.")
    # The job page: counts per type and the next unreviewed file.
    page.goto(f"{platform.base_url}/ui/inference-jobs/{reviewed_file['job']}")
    page.wait_for_selector("table[data-list=files]")
    row = page.inner_text("table[data-list=files] tbody tr")
    assert "support-call.wav" in row and "\t6\t" in f"\t{row}\t".replace(" ", "\t")  # 6 noise bursts
    assert page.is_visible("text=Review the next unreviewed file")
    assert "null" not in page.inner_text("main") and "undefined" not in page.inner_text("main")
    screenshot(page, "inference-job")


def regions(page):
    return page.evaluate("window.fathomTest.regions()")


def test_review_page_draws_filters_plays_and_reviews_from_the_keyboard(browser, platform, reviewed_file):
    f, client = reviewed_file, reviewed_file["client"]
    page, errors = open_page(browser, platform, client, f"/ui/inference-jobs/{f['job']}/files/{f['file']}")
    page.wait_for_function("window.fathomTest && window.fathomTest.ready", timeout=30_000)
    drawn = regions(page)
    assert sorted(r["id"] for r in drawn) == sorted(d["id"] for d in f["detections"])
    by_id = {d["id"]: d for d in f["detections"]}
    for r in drawn:
        assert abs(r["start"] * 1000 - by_id[r["id"]]["start_ms"]) < 1 and r["type"] == by_id[r["id"]]["artifact_type"]
    screenshot(page, "review")

    # Clicking a region seeks to its start (not to where the click landed).
    target = next(d for d in f["detections"] if d["start_ms"] == 8000 and d["artifact_type"] == "loud")
    page.locator(f'[part="region {target["id"]}"]').click(position={"x": 12, "y": 10})
    page.wait_for_function(f"Math.abs(window.fathomTest.currentTime() - {target['start_ms'] / 1000}) < 0.02")
    assert page.inner_text("[data-testid=review-state]") == "none"

    # The confidence slider hides the regions under it; the type toggles hide a type.
    page.eval_on_selector("[data-testid=confidence]", "el => { el.value = 0.8; el.dispatchEvent(new Event('input')); }")
    page.wait_for_function("window.fathomTest.regions().length === %d" % sum(d["confidence"] >= 0.8 for d in f["detections"]))
    page.eval_on_selector("[data-testid=confidence]", "el => { el.value = 0; el.dispatchEvent(new Event('input')); }")
    page.uncheck("input[data-type=loud]")
    page.wait_for_function("window.fathomTest.regions().length === 6")
    assert {r["type"] for r in regions(page)} == {"noise_burst"}
    page.check("input[data-type=loud]")
    page.wait_for_function("window.fathomTest.regions().length === 9")

    # Keyboard: J walks the detections in time order; A accepts, R rejects, E [ ] E corrects.
    ordered = sorted(f["detections"], key=lambda d: (d["start_ms"], d["id"]))
    page.evaluate(f"window.fathomTest.select({ordered[0]['id']!r}, {{seek: true}})")
    page.keyboard.press("a")
    page.wait_for_function("document.querySelector('[data-testid=review-state]').innerText === 'accept'")
    page.keyboard.press("j")
    page.wait_for_function(f"Math.abs(window.fathomTest.currentTime() - {ordered[1]['start_ms'] / 1000}) < 0.02")
    page.keyboard.press("r")
    page.wait_for_function("document.querySelector('[data-testid=review-state]').innerText === 'reject'")
    page.keyboard.press("j")
    page.keyboard.press("e")
    for key in ["[", "[", "]", "]", "]"]:
        page.keyboard.press(key)
    page.keyboard.press("e")
    page.wait_for_function("document.querySelector('[data-testid=review-state]').innerText === 'correct'")
    page.keyboard.press("j")
    page.keyboard.press("a")
    page.wait_for_function("document.querySelector('[data-testid=reviewed-count]').innerText.startsWith('4 /')")
    page.keyboard.press("u")  # undo the last accept
    page.wait_for_function("document.querySelector('[data-testid=reviewed-count]').innerText.startsWith('3 /')")
    page.keyboard.press("k")  # back to the corrected one
    page.wait_for_function(f"Math.abs(window.fathomTest.currentTime() - {(ordered[2]['start_ms'] - 20) / 1000}) < 0.02")
    screenshot(page, "review-reviewed")

    reviews = {r["detection_id"]: r for r in client.get(f"{f['base']}/reviews").json()["items"]}
    assert {k: r["action"] for k, r in reviews.items()} == {ordered[0]["id"]: "accept", ordered[1]["id"]: "reject", ordered[2]["id"]: "correct"}
    corrected = reviews[ordered[2]["id"]]
    assert (corrected["start_ms"], corrected["end_ms"]) == (ordered[2]["start_ms"] - 20, ordered[2]["end_ms"] + 30)
    assert all(r["reviewed_by"] for r in reviews.values())

    # The spectrogram toggle draws the visible window from the server's bands.
    page.click("button.toggle-spectrogram")
    page.wait_for_function("Number(document.querySelector('[data-testid=spectrogram]').dataset.frames) > 100")

    # Send to a dataset: a new draft set holds exactly the accepted and the corrected detections.
    page.select_option("[data-testid=send-dataset]", f["dataset"])
    page.select_option("[data-testid=send-set]", "")
    page.click("button[data-action=send]")
    page.wait_for_selector(".send-result a")
    set_id = page.get_attribute(".send-result", "data-set-id")
    screenshot(page, "review-sent")
    aset = client.get(f"/api/v1/datasets/{f['dataset']}/annotation-sets/{set_id}").json()
    assert aset["status"] == "draft"
    got = sorted((a["artifact_type"], a["start_ms"], a["end_ms"]) for a in aset["annotations"])
    want = sorted([(ordered[0]["artifact_type"], ordered[0]["start_ms"], ordered[0]["end_ms"]),
                   (ordered[2]["artifact_type"], ordered[2]["start_ms"] - 20, ordered[2]["end_ms"] + 30)])
    assert got == want
    negatives = aset["annotations"][0]["extra_data"]["reviewed_negatives"]
    assert [n["detection_id"] for n in negatives] == [ordered[1]["id"]]
    audio = client.get(f"/api/v1/datasets/{f['dataset']}/audio/{aset['annotations'][0]['audio_file_id']}").json()
    assert audio["original_filename"] == "support-call.wav" and audio["duration_ms"] == 20_000
    # Sending again to the same set is refused.
    again = client.post(f"{f['base']}/send-to-dataset", json={"dataset_id": f["dataset"], "annotation_set_id": set_id})
    assert again.status_code == 409 and "already sent" in again.json()["detail"]
    assert not errors, errors
