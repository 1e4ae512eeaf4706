"""The transcribe page in a real browser: timed words that seek, follow playback, and mark low confidence."""

from __future__ import annotations

from data_pipelines.audio import encode_audio
from data_pipelines.speech import speak
from tests.browser import open_page, screenshot
from tests.factories import Client


def test_transcript_words_seek_and_follow_playback(browser, platform, tmp_path):
    client = platform.org("ui-stt")
    wave, rate = speak("the patient reports a mild fever and a dry cough since monday", rate_wpm=150)
    path = tmp_path / "visit.wav"
    path.write_bytes(encode_audio(wave, rate, "wav"))
    v3 = Client(platform.base_url, client.key, header="Authorization")
    expected = v3.post("/api/v3/stt", data={"model": "medical", "language": "en"}, files={"audio_file": ("visit.wav", path.read_bytes())}).json()
    assert len(expected["words"]) >= 6, expected

    page, errors = open_page(browser, platform, client, "/ui/transcribe?model=medical")
    page.wait_for_function("window.fathomTest && window.fathomTest.ready", timeout=30_000)
    page.set_input_files("[data-testid=file]", str(path))
    page.click("button[type=submit]")
    page.wait_for_function("window.fathomTest.transcribed === true", timeout=60_000)
    spans = page.locator("[data-testid=transcript] .word")
    assert spans.all_inner_texts() == [w["word"] for w in expected["words"]]
    low = [w["word"] for w in expected["words"] if w["confidence"] < 0.6]
    assert page.locator("[data-testid=transcript] .word.low").all_inner_texts() == low

    target = expected["words"][3]
    spans.nth(3).click()
    page.wait_for_function(f"Math.abs(window.fathomTest.currentTime() - {target['start']}) < 0.02")
    assert "current" in spans.nth(3).get_attribute("class")
    screenshot(page, "transcribe")

    # Playing from the start: the highlighted word is always the one whose span holds the time.
    page.evaluate("window.fathomTest.ws.setTime(0); window.fathomTest.ws.play()")
    seen = set()
    for _ in range(25):
        page.wait_for_timeout(120)
        t, i = page.evaluate("[window.fathomTest.currentTime(), window.fathomTest.currentWord()]")
        if i >= 0:
            w = expected["words"][i]
            assert w["start"] - 0.05 <= t <= w["end"] + 0.3, (t, w)  # sampled a moment after the highlight moved
            seen.add(i)
    page.evaluate("window.fathomTest.ws.pause()")
    assert len(seen) >= 3, seen
    assert not errors, errors
