"""Evaluations over real HTTP on the deployed app: created, run by the Dispatcher on the serving deployments, read back.

STT: the shipped ``general`` and ``medical`` bases on a custom model's test pairs (no
training needed). Detectors: two untrained detectors on a small annotated dataset, which
checks the bookkeeping (trained models are evaluated in test_detection_flow). Both rows
and summaries are recomputed here from the per-file answers.
"""

from __future__ import annotations

import csv
import io

import jiwer
import pytest

from cluster.accounts import create_api_key
from cluster.db import session_scope
from data_pipelines.audio import encode_audio
from data_pipelines.synth import speak
from schemas.auth import DETECTION_READ, DETECTION_WRITE
from tests.browser import open_page, screenshot
from tests.factories import Client, annotate, make_dataset, register_detector, wait_for

SENTENCES = (
    "the stent was placed in the left artery",
    "atrial fibrillation was seen on the monitor",
    "the patient takes aspirin every morning",
    "no further findings today",
)
TYPES = ["glitch", "long_pause"]


def finished(client: Client, evaluation_id: str) -> dict:
    def done():
        e = client.get(f"/api/v1/evaluations/{evaluation_id}").json()
        return e if e["status"] in ("completed", "failed") else None

    return wait_for(done, timeout=300, interval=1, what="evaluation")


def all_files(client: Client, evaluation_id: str, **params) -> list[dict]:
    out, page = [], 1
    while True:
        body = client.get(f"/api/v1/evaluations/{evaluation_id}/files", params={"page": page, "page_size": 100, **params}).json()
        out += body["items"]
        if len(out) >= body["total"]:
            return out
        page += 1


@pytest.fixture(scope="module")
def stt_data(platform):
    c = platform.org("evaluations-stt")
    v3 = Client(c.base_url, c.key, header="Authorization", org_id=c.org_id)
    mid = v3.post("/api/v3/custom_models", json={"name": "eval", "language": "en", "base_model": "medical"}).json()["id"]
    for i, text in enumerate(SENTENCES):
        wave, rate = speak(text)
        files = {"audio_file": (f"utt_{i}.wav", encode_audio(wave, rate, "wav")), "transcript_file": (f"utt_{i}.txt", text.encode())}
        assert v3.put(f"/api/v3/custom_models/{mid}/data", data={"type": "test"}, files=files).status_code == 200
    return c, mid


def test_stt_evaluation_scores_every_file_with_jiwer_and_compares_the_models(platform, stt_data, other_org, browser):
    c, mid = stt_data
    body = {"models": ["general", "medical"], "data": {"custom_model_id": mid}, "config": {"boost_terms": ["stent"], "keyterms": ["aspirin"]}}
    r = c.post("/api/v1/evaluations", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["status"], created["kind"], created["total_files"]) == ("queued", "stt", len(SENTENCES))
    assert [m["label"] for m in created["models"]] == ["general", "medical"]
    e = finished(c, created["id"])
    assert e["status"] == "completed" and e["progress"] == 100, e

    rows = all_files(c, e["id"])
    assert len(rows) == 2 * len(SENTENCES) and all(r["status"] == "completed" for r in rows)
    for row in rows:
        d = row["details"]
        assert row["score"] == pytest.approx(100 * jiwer.wer(d["reference"], d["hypothesis"] or "<empty>"), abs=0.01)
        assert row["errors"] == d["substitutions"] + d["deletions"] + d["insertions"]
        other = "medical" if row["model"] == "general" else "general"
        twin = next(x for x in rows if x["file_id"] == row["file_id"] and x["model"] == other)
        assert row["differences"] == {other: pytest.approx(row["score"] - twin["score"], abs=1e-3)}
    results = {m["reference"]: m for m in e["results"]["models"]}
    for ref in ("general", "medical"):
        mine = [x for x in rows if x["model"] == ref]
        s = results[ref]["summary"]
        corpus = 100 * jiwer.wer([x["details"]["reference"] for x in mine], [x["details"]["hypothesis"] for x in mine])
        assert s["word_error_rate"] == pytest.approx(corpus, abs=0.01)
        assert s["sentence_error_rate"] == pytest.approx(100 * sum(x["errors"] > 0 for x in mine) / len(mine), abs=0.01)
        assert s["keyterms"]["reference"] == 2  # "stent" and "aspirin" once each
    (cmp,) = e["results"]["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["metric"], cmp["files"]) == ("general", "medical", "word_error_rate", len(SENTENCES))
    assert cmp["difference"] == pytest.approx(results["medical"]["summary"]["word_error_rate"] - results["general"]["summary"]["word_error_rate"], abs=0.02)
    assert cmp["ci_low"] <= cmp["difference"] <= cmp["ci_high"]

    # Sorted by WER, worst first, one model; and the CSV export holds every row.
    worst = c.get(f"/api/v1/evaluations/{e['id']}/files", params={"model": "medical", "sort": "score", "direction": "desc"}).json()["items"]
    assert [x["score"] for x in worst] == sorted((x["score"] for x in rows if x["model"] == "medical"), reverse=True)
    exported = c.get(f"/api/v1/evaluations/{e['id']}/files", params={"format": "csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(lines) == len(rows) and {line["hypothesis"] for line in lines} == {x["details"]["hypothesis"] for x in rows}

    # Its page: each model's WER with its interval, and a row's word alignment coloured by edit.
    page, errors = open_page(browser, platform, c, f"/ui/evaluations/{e['id']}")
    page.wait_for_function("window.fathomTest && window.fathomTest.ready", timeout=30_000)
    two = lambda x: str(int(x)) if float(x).is_integer() else f"{x:.2f}"  # noqa: E731  (the page's two decimals)
    for ref in ("general", "medical"):
        s, ci = results[ref]["summary"], results[ref]["summary"]["interval"]
        assert f"WER {two(s['word_error_rate'])}% (95% {two(ci['ci_low'])}% to {two(ci['ci_high'])}%)" in page.inner_text(
            f"table[data-list=summary] tr[data-model='{ref}']")
        assert ci["ci_low"] <= s["word_error_rate"] + 0.01 and s["word_error_rate"] - 0.01 <= ci["ci_high"]
    page.select_option("[data-testid=model]", "medical")
    row = next(x for x in worst if x["errors"] > 0)
    # The difference column is against the other model, whichever is chosen.
    assert "Δ vs general" in page.inner_text("table[data-list=files] thead")
    diff = page.inner_text(f"table[data-list=files] tr[data-file='{row['file_id']}'] td[data-col='diff:general']")
    assert float(diff) == pytest.approx(row["differences"]["general"], abs=1e-4)
    page.click(f"table[data-list=files] tr[data-file='{row['file_id']}']")
    page.wait_for_selector("[data-testid=alignment]")
    ref_line, hyp_line = "[data-testid=alignment] p:nth-child(1)", "[data-testid=alignment] p:nth-child(2)"
    d = row["details"]
    assert page.locator(f"{ref_line} .op-sub").count() == d["substitutions"]
    assert page.locator(f"{ref_line} .op-del:not(.gap)").count() == d["deletions"]
    assert page.locator(f"{hyp_line} .op-ins:not(.gap)").count() == d["insertions"]
    screenshot(page, "evaluation-stt")
    assert not errors, errors

    # Another organization sees none of it; a key without custom_models scopes cannot read an STT evaluation.
    assert other_org.get(f"/api/v1/evaluations/{e['id']}").status_code == 404
    assert other_org.get(f"/api/v1/evaluations/{e['id']}/files").status_code == 404
    with session_scope(platform.settings.database_url) as s:
        _, key = create_api_key(s, c.org_id, "detection-only", scopes=[DETECTION_READ, DETECTION_WRITE])
    detection_only = Client(c.base_url, key, org_id=c.org_id)
    assert detection_only.get(f"/api/v1/evaluations/{e['id']}").status_code == 403
    assert e["id"] not in [x["id"] for x in detection_only.get("/api/v1/evaluations").json()["items"]]


def test_evaluation_requests_are_checked_before_anything_is_queued(stt_data, platform):
    c, mid = stt_data
    cases = [
        ({"models": ["general"], "data": {"custom_model_id": mid}}, 422),  # one model
        ({"models": ["general", "general"], "data": {"custom_model_id": mid}}, 400),
        ({"models": ["general", f"custom_model_{mid}"], "data": {"custom_model_id": mid}}, 409),  # never trained
        ({"models": ["general", "custom_model_999999"], "data": {"custom_model_id": mid}}, 404),
        ({"models": ["general", "medical"], "data": {"custom_model_id": 999999}}, 404),
        ({"models": ["general", "medical"], "data": {"custom_model_id": mid, "pair_ids": [1]}}, 422),
        ({"models": ["general", "medical"], "data": {"pair_ids": [999999]}}, 404),
    ]
    before = c.get("/api/v1/evaluations").json()["total"]
    for body, status in cases:
        r = c.post("/api/v1/evaluations", json=body)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()) >= {"detail"}  # the v1 error shape
    assert c.get("/api/v1/evaluations").json()["total"] == before


def test_detector_evaluation_rows_add_up_and_name_every_miss(platform, org):
    ds, events = make_dataset(org, TYPES, [8.0, 8.0, 8.0], seed=40)
    set_id = annotate(org, ds, events, publish=True)
    a = register_detector(platform.settings, org.org_id, TYPES)
    b = register_detector(platform.settings, org.org_id, TYPES + ["echo"])
    r = org.post("/api/v1/evaluations", json={"models": [a, b], "data": {"dataset_id": ds, "annotation_set_id": set_id}, "config": {"inference": {"threshold": 0.45}}})
    assert r.status_code == 201, r.text
    assert r.json()["config"]["artifact_types"] == TYPES  # the classes both models detect
    e = finished(org, r.json()["id"])
    assert e["status"] == "completed", e
    rows = all_files(org, e["id"])
    assert len(rows) == 6 and {x["file_id"] for x in rows} == set(events)
    for ref in (a, b):
        mine = [x for x in rows if x["model"] == ref]
        summary = next(m for m in e["results"]["models"] if m["reference"] == ref)["summary"]
        for t in TYPES:
            truth = [(ev.start_ms, ev.end_ms) for x in mine for ev in events[x["file_id"]] if ev.artifact_type == t]
            missed = [(m["start_ms"], m["end_ms"]) for x in mine for m in x["details"]["classes"][t]["missed"]]
            tp = sum(x["details"]["classes"][t]["tp"] for x in mine)
            fp = sum(len(x["details"]["classes"][t]["false_positives"]) for x in mine)
            assert set(missed) <= set(truth) and tp + len(missed) == len(truth) == summary["per_class"][t]["support"]
            assert (summary["per_class"][t]["insertions"], summary["per_class"][t]["deletions"]) == (fp, len(missed))
    assert org.post("/api/v1/evaluations", json={"models": [a, b], "data": {"dataset_id": ds, "annotation_set_id": annotate(org, ds, events, publish=False)}}).status_code == 409
