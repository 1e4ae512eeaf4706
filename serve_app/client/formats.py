"""Annotation files in (CSV, Audacity label tracks) and detection results out (JSON lines, CSV, Audacity labels).

Pure functions over text, so the CLI's parsing and writing are tested without a server.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from schemas.audio_formats import SUPPORTED_EXTENSIONS

AUDIO_SUFFIXES = tuple(sorted(SUPPORTED_EXTENSIONS))  # what the server accepts and decodes


class FormatError(ValueError):
    pass


def audio_files(folder: Path) -> list[tuple[Path, str]]:
    """(path, name relative to ``folder``) of every audio file under it, sorted; a single file names itself."""
    if folder.is_file():
        return [(folder, folder.name)]
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]
    return sorted((p, p.relative_to(folder).as_posix()) for p in found)


def _seconds_to_ms(value: str, where: str) -> int:
    try:
        return round(float(value) * 1000)
    except ValueError:
        raise FormatError(f"{where}: {value!r} is not a number of seconds") from None


def read_csv(text: str) -> list[dict[str, Any]]:
    """Rows of ``filename`` (or ``audio_file_id``), ``artifact_type`` (or ``label``), and
    ``start_ms``/``end_ms`` or ``start``/``end`` in seconds; other columns go to ``extra_data``."""
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or ())
    if not columns & {"filename", "audio_file_id"} or not columns & {"artifact_type", "label"}:
        raise FormatError("the CSV needs a header with filename (or audio_file_id), artifact_type (or label), and start/end")
    if not ({"start_ms", "end_ms"} <= columns or {"start", "end"} <= columns):
        raise FormatError("the CSV needs start_ms and end_ms, or start and end in seconds")
    known = {"filename", "audio_file_id", "artifact_type", "label", "start_ms", "end_ms", "start", "end"}
    rows = []
    for n, row in enumerate(reader, start=2):
        where = f"line {n}"
        if "start_ms" in columns and row.get("start_ms") not in (None, ""):
            try:
                start, end = int(float(row["start_ms"])), int(float(row["end_ms"]))
            except (TypeError, ValueError):
                raise FormatError(f"{where}: start_ms and end_ms must be numbers") from None
        else:
            start, end = _seconds_to_ms(row.get("start") or "", where), _seconds_to_ms(row.get("end") or "", where)
        extra = {k: v for k, v in row.items() if k not in known and k and v not in (None, "")}
        rows.append({
            "filename": row.get("filename") or None, "audio_file_id": row.get("audio_file_id") or None,
            "artifact_type": (row.get("artifact_type") or row.get("label") or "").strip(), "start_ms": start, "end_ms": end,
            **({"extra_data": extra} if extra else {}),
        })
    return rows


def read_audacity(text: str, filename: str) -> list[dict[str, Any]]:
    """An Audacity label track (``start<TAB>end<TAB>label``, seconds) for the audio ``filename``.

    Spectral-selection lines (starting with a backslash) are skipped; a point label has start == end.
    """
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("\\"):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise FormatError(f"line {n}: an Audacity label is start<TAB>end<TAB>label")
        start, end = _seconds_to_ms(parts[0], f"line {n}"), _seconds_to_ms(parts[1], f"line {n}")
        rows.append({"filename": filename, "audio_file_id": None, "artifact_type": parts[2].strip(), "start_ms": start, "end_ms": end})
    return rows


def match_audio(rows: Iterable[dict[str, Any]], audio: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Annotations for the bulk endpoint, each row's file found by id, name (a path's last component), or a
    unique stem; and what matched nothing."""
    by_name = {a["original_filename"]: a["id"] for a in audio}
    by_stem: dict[str, list[str]] = {}
    for a in audio:
        by_stem.setdefault(PurePosixPath(a["original_filename"]).stem, []).append(a["id"])
    ids = {a["id"] for a in audio}
    out, unmatched = [], []
    for row in rows:
        audio_id = row.get("audio_file_id")
        if audio_id and audio_id not in ids:
            unmatched.append(audio_id)
            continue
        if not audio_id:
            name = row["filename"]
            stems = by_stem.get(PurePosixPath(name).stem, [])
            audio_id = by_name.get(name) or by_name.get(PurePosixPath(name).name) or (stems[0] if len(stems) == 1 else None)
            if audio_id is None:
                unmatched.append(name)
                continue
        item = {"audio_file_id": audio_id, "artifact_type": row["artifact_type"], "start_ms": row["start_ms"], "end_ms": row["end_ms"]}
        if row.get("extra_data"):
            item["extra_data"] = row["extra_data"]
        out.append(item)
    return out, sorted(set(unmatched))


def result_rows(job: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    """One record per file of a finished inference job, named as the user's folder names it."""
    return [
        {"file": names.get(f["id"], f["original_filename"]), "file_id": f["id"], "status": f["status"],
         "error_message": f["error_message"], "duration_ms": f["duration_ms"], "detections": f["detections"]}
        for f in job["files"]
    ]


def write_jsonl(records: list[dict[str, Any]], out: Path) -> None:
    out.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def write_csv(records: list[dict[str, Any]], out: Path) -> None:
    """A row per detection; a file without detections (or failed) gets one row with empty detection columns."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "artifact_type", "start_ms", "end_ms", "confidence", "status", "error_message"])
    for r in records:
        for d in r["detections"] or [None]:
            if d is None:
                w.writerow([r["file"], "", "", "", "", r["status"], r["error_message"] or ""])
            else:
                w.writerow([r["file"], d["artifact_type"], d["start_ms"], d["end_ms"], f"{d['confidence']:.4f}", r["status"], ""])
    out.write_text(buf.getvalue())


def audacity_labels(detections: list[dict[str, Any]]) -> str:
    return "".join(f"{d['start_ms'] / 1000:.3f}\t{d['end_ms'] / 1000:.3f}\t{d['artifact_type']}\n" for d in detections)


def write_audacity(records: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One label track per audio file (``<out_dir>/<relative path>.txt``), importable beside the audio in Audacity."""
    written = []
    for r in records:
        path = out_dir / PurePosixPath(r["file"]).with_suffix(".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(audacity_labels(r["detections"]))
        written.append(path)
    return written
