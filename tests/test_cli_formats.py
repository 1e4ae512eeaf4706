"""The CLI's file formats without a server: annotation CSVs and Audacity label tracks in, results out."""

from __future__ import annotations

import csv
import json

import pytest

from serve_app.client import formats
from serve_app.client.api import FathomError

AUDIO = [
    {"id": "a1", "original_filename": "day1/call_01.wav"},
    {"id": "a2", "original_filename": "call_02.flac"},
    {"id": "a3", "original_filename": "day2/call_02.wav"},  # same stem as a2
]


def test_csv_in_seconds_or_milliseconds_with_extra_columns():
    rows = formats.read_csv("filename,label,start,end,note\nday1/call_01.wav,glitch,1.25,1.3,loud\ncall_02.flac,click,0,0.002,\n")
    assert rows[0] == {"filename": "day1/call_01.wav", "audio_file_id": None, "artifact_type": "glitch", "start_ms": 1250,
                       "end_ms": 1300, "extra_data": {"note": "loud"}}
    assert (rows[1]["start_ms"], rows[1]["end_ms"]) == (0, 2) and "extra_data" not in rows[1]
    ms = formats.read_csv("audio_file_id,artifact_type,start_ms,end_ms\na2,glitch,10,20\n")
    assert ms[0]["audio_file_id"] == "a2" and (ms[0]["start_ms"], ms[0]["end_ms"]) == (10, 20)


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n", "needs a header"),
    ("filename,artifact_type,start\nx.wav,glitch,1\n", "start_ms and end_ms, or start and end"),
    ("filename,artifact_type,start,end\nx.wav,glitch,soon,2\n", "line 2"),
])
def test_bad_csvs_say_what_is_wrong(text, message):
    with pytest.raises(formats.FormatError, match=message):
        formats.read_csv(text)


def test_audacity_labels_round_trip_and_skip_spectral_lines():
    text = "1.500000\t1.750000\tglitch\n\\\t200.0\t4000.0\n3.0\t3.0\tclick\n"
    rows = formats.read_audacity(text, "call_01")
    assert [(r["artifact_type"], r["start_ms"], r["end_ms"]) for r in rows] == [("glitch", 1500, 1750), ("click", 3000, 3000)]
    written = formats.audacity_labels([{"artifact_type": "glitch", "start_ms": 1500, "end_ms": 1750}])
    assert formats.read_audacity(written, "x")[0]["start_ms"] == 1500
    with pytest.raises(formats.FormatError, match="line 1"):
        formats.read_audacity("1.0 2.0 glitch\n", "x")


def test_rows_find_their_audio_by_id_name_or_unique_stem():
    rows = [
        {"filename": "day1/call_01.wav", "artifact_type": "g", "start_ms": 0, "end_ms": 1},
        {"filename": "call_01", "artifact_type": "g", "start_ms": 0, "end_ms": 1},  # an Audacity file's stem
        {"filename": "elsewhere/call_02.flac", "artifact_type": "g", "start_ms": 0, "end_ms": 1},  # a path: its last component
        {"filename": "call_02", "artifact_type": "g", "start_ms": 0, "end_ms": 1},  # ambiguous
        {"filename": "call_02.flac", "artifact_type": "g", "start_ms": 0, "end_ms": 1},
        {"filename": None, "audio_file_id": "zz", "artifact_type": "g", "start_ms": 0, "end_ms": 1},
    ]
    items, unmatched = formats.match_audio(rows, AUDIO)
    assert [i["audio_file_id"] for i in items] == ["a1", "a1", "a2", "a2"]
    assert unmatched == ["call_02", "zz"]


def test_results_are_written_as_jsonl_csv_and_label_tracks(tmp_path):
    job = {"files": [
        {"id": "f1", "original_filename": "x.wav", "status": "completed", "error_message": None, "duration_ms": 4000,
         "detections": [{"artifact_type": "glitch", "start_ms": 100, "end_ms": 150, "confidence": 0.91}]},
        {"id": "f2", "original_filename": "bad.wav", "status": "failed", "error_message": "not audio", "duration_ms": None, "detections": []},
    ]}
    records = formats.result_rows(job, {"f1": "day1/x.wav"})
    formats.write_jsonl(records, tmp_path / "r.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["file"] for r in lines] == ["day1/x.wav", "bad.wav"] and lines[1]["error_message"] == "not audio"
    formats.write_csv(records, tmp_path / "r.csv")
    table = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [(r["file"], r["artifact_type"], r["confidence"], r["status"]) for r in table] == [
        ("day1/x.wav", "glitch", "0.9100", "completed"), ("bad.wav", "", "", "failed")]
    written = formats.write_audacity(records, tmp_path / "labels")
    assert written[0] == tmp_path / "labels" / "day1" / "x.txt" and written[0].read_text() == "0.100\t0.150\tglitch\n"


def test_audio_files_are_found_recursively_by_suffix(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/1.wav", "2.FLAC", "notes.txt", "a/3.mp3"):
        (tmp_path / name).write_bytes(b"x")
    assert [name for _, name in formats.audio_files(tmp_path)] == ["2.FLAC", "a/1.wav", "a/3.mp3"]
    assert [name for _, name in formats.audio_files(tmp_path / "a" / "1.wav")] == ["1.wav"]


def test_errors_of_both_apis_become_one_exception_with_the_server_message():
    import httpx

    v1 = FathomError.from_response(httpx.Response(404, json={"detail": "Dataset not found"}))
    v3 = FathomError.from_response(httpx.Response(429, json={"error": "Too Many Requests", "message": "Rate limit exceeded",
                                                             "error_code": "RATE_LIMIT_EXCEEDED", "details": {}}))
    invalid = FathomError.from_response(httpx.Response(422, json={"detail": [{"loc": ["body", "name"], "msg": "Field required"}]}))
    assert (str(v1), v1.status_code) == ("404: Dataset not found", 404)
    assert (v3.message, v3.error_code) == ("Rate limit exceeded", "RATE_LIMIT_EXCEEDED")
    assert invalid.message == "name: Field required"
