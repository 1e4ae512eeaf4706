"""A small typed Python client for both of Fathom's APIs (``httpx``), used by the ``fathom`` CLI and on its own.

    from serve_app.client import FathomClient
    client = FathomClient("http://127.0.0.1:8000", key="fk_...")
    dataset = client.create_dataset("calls", ["glitch", "long_pause"])
    client.upload_dataset_file(dataset["id"], Path("call_01.wav"))

Answers are the API's JSON as dicts (their shapes are in ``/openapi.json``). Every refusal of
either API, and a server that cannot be reached, raises ``FathomError`` with the server's message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from schemas.audio_formats import CONTENT_TYPES

DEFAULT_TIMEOUT_S = 60.0
UPLOAD_TIMEOUT_S = 600.0
Progress = Callable[[int], None]  # called with the bytes just sent


class FathomError(Exception):
    """A refusal from either API (v1 ``{"detail"}`` or v3 ``{"error", "message", "error_code", "details"}``)."""

    def __init__(self, message: str, status_code: int | None = None, error_code: str | None = None, body: Any = None):
        super().__init__(message)
        self.message, self.status_code, self.error_code, self.body = message, status_code, error_code, body

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}" if self.status_code else self.message

    @classmethod
    def from_response(cls, response: httpx.Response) -> "FathomError":
        try:
            body = response.json()
        except ValueError:
            body = response.text
        message, code = response.reason_phrase or "error", None
        if isinstance(body, dict) and "message" in body:  # v3
            message, code = str(body["message"]), body.get("error_code")
        elif isinstance(body, dict) and "detail" in body:  # v1 (and request validation)
            detail = body["detail"]
            if isinstance(detail, list):
                message = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail if isinstance(d, dict))
            else:
                message = str(detail)
        elif isinstance(body, str) and body.strip():
            message = body.strip()[:500]
        return cls(message, response.status_code, code, body)


class _Counted:
    """A file read in chunks that reports each chunk sent (multipart uploads stream it)."""

    def __init__(self, fh: BinaryIO, progress: Progress | None):
        self.fh, self.progress = fh, progress

    def read(self, n: int = -1) -> bytes:
        chunk = self.fh.read(n)
        if chunk and self.progress:
            self.progress(len(chunk))
        return chunk


class FathomClient:
    def __init__(self, base_url: str, key: str, *, timeout: float = DEFAULT_TIMEOUT_S, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers={"X-API-Key": key}, timeout=timeout, transport=transport)
        self.storage = httpx.Client(timeout=UPLOAD_TIMEOUT_S, transport=transport)  # presigned URLs: no key

    def close(self) -> None:
        self.http.close()
        self.storage.close()

    def __enter__(self) -> "FathomClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- transport ------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise FathomError(f"cannot reach {self.base_url}: {e}") from None
        if response.status_code >= 400:
            raise FathomError.from_response(response)
        return response.json() if response.content else None

    def pages(self, path: str, page_size: int = 100, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a v1 list, page by page."""
        page = 1
        while True:
            body = self.request("GET", path, params={**params, "page": page, "page_size": page_size})
            yield from body["items"]
            if page * page_size >= body["total"] or not body["items"]:
                return
            page += 1

    def _post_file(self, url: str, fields: dict[str, str], path: Path, progress: Progress | None) -> None:
        with path.open("rb") as fh:
            try:
                r = self.storage.post(url, data=fields, files={"file": (path.name, _Counted(fh, progress), _content_type(path))})
            except httpx.HTTPError as e:
                raise FathomError(f"upload of {path} failed: {e}") from None
        if r.status_code >= 300:
            raise FathomError.from_response(r)

    # --- datasets and annotations -------------------------------------------------------------------

    def create_dataset(self, name: str, artifact_types: Sequence[str], description: str | None = None) -> dict[str, Any]:
        body = {"name": name, "description": description, "artifact_types": [{"name": t} for t in artifact_types]}
        return self.request("POST", "/api/v1/datasets", json=body)

    def dataset_audio(self, dataset_id: str) -> list[dict[str, Any]]:
        return list(self.pages(f"/api/v1/datasets/{dataset_id}/audio"))

    def upload_dataset_file(self, dataset_id: str, path: Path, filename: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
        """upload-url, the presigned POST, confirm: the file is queued for preprocessing."""
        name = filename or path.name
        info = self.request(
            "POST", f"/api/v1/datasets/{dataset_id}/audio/upload-url",
            json={"filename": name, "content_type": _content_type(path), "file_size": path.stat().st_size},
        )
        self._post_file(info["upload_url"], info["fields"], path, progress)
        return self.request("POST", f"/api/v1/datasets/{dataset_id}/audio/confirm", json={"audio_id": info["audio_id"]})

    def create_annotation_set(self, dataset_id: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/datasets/{dataset_id}/annotation-sets")

    def add_annotations(self, dataset_id: str, set_id: str, annotations: list[dict[str, Any]]) -> dict[str, Any]:
        path = f"/api/v1/datasets/{dataset_id}/annotation-sets/{set_id}/annotations/bulk"
        return self.request("POST", path, json={"annotations": annotations})

    def publish(self, dataset_id: str, set_id: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/datasets/{dataset_id}/annotation-sets/{set_id}/publish")

    # --- training --------------------------------------------------------------------------------

    def start_training(self, dataset_id: str, set_id: str, config: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/api/v1/training-jobs", json={"dataset_id": dataset_id, "annotation_set_id": set_id, "config": config})

    def training_job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/training-jobs/{job_id}")

    def training_log(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.pages(f"/api/v1/training-jobs/{job_id}/logs"))

    # --- inference ---------------------------------------------------------------------------------

    def create_inference_job(self, model: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("POST", "/api/v1/inference-jobs", json={"model_id": model, "config": config or {}})

    def upload_inference_file(self, job_id: str, path: Path, filename: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
        name = filename or path.name
        info = self.request(
            "POST", f"/api/v1/inference-jobs/{job_id}/files/upload-url",
            json={"filename": name, "content_type": _content_type(path), "file_size_bytes": path.stat().st_size},
        )
        self._post_file(info["upload_url"], info["upload_fields"], path, progress)
        return self.request("POST", f"/api/v1/inference-jobs/{job_id}/files/confirm", json={"file_id": info["file_id"]})

    def inference_job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/inference-jobs/{job_id}")

    # --- custom speech-to-text (v3) -------------------------------------------------------------------

    def create_custom_model(self, name: str, language: str = "en", base_model: str = "general", description: str | None = None) -> dict[str, Any]:
        body = {"name": name, "language": language, "base_model": base_model, "description": description}
        return self.request("POST", "/api/v3/custom_models", json=body)

    def custom_model(self, model_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/v3/custom_models/{model_id}")

    def upload_pair(self, model_id: int, audio: Path, transcript: Path, kind: str = "train") -> dict[str, Any]:
        with audio.open("rb") as a, transcript.open("rb") as t:
            files = {"audio_file": (audio.name, a, _content_type(audio)), "transcript_file": (transcript.name, t, "text/plain")}
            return self.request("PUT", f"/api/v3/custom_models/{model_id}/data", data={"type": kind}, files=files, timeout=UPLOAD_TIMEOUT_S)

    def start_stt_training(self, model_id: int) -> dict[str, Any]:
        return self.request("POST", f"/api/v3/custom_models/{model_id}/run", json={})

    def transcribe(self, model: str, audio: Path, language: str = "en", boost_terms: Sequence[str] = ()) -> dict[str, Any]:
        data = {"model": model, "language": language}
        if boost_terms:
            data["boost_terms"] = ",".join(boost_terms)
        with audio.open("rb") as fh:
            return self.request("POST", "/api/v3/stt", data=data, files={"audio_file": (audio.name, fh, _content_type(audio))},
                                timeout=UPLOAD_TIMEOUT_S)

    # --- registry and evaluations -----------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, reason: str = "", force: bool = False) -> dict[str, Any]:
        body = {"version": version, "reason": reason, "force": force}
        return self.request("PUT", f"/api/v1/registry/models/{name}/aliases/{alias}", json=body)

    def rollback_alias(self, name: str, alias: str, reason: str = "", to_version: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": reason}
        if to_version is not None:
            body["to_version"] = to_version
        return self.request("POST", f"/api/v1/registry/models/{name}/aliases/{alias}/rollback", json=body)

    def create_evaluation(self, models: Sequence[str], data: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("POST", "/api/v1/evaluations", json={"models": list(models), "data": data, "config": config or {}})

    def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/evaluations/{evaluation_id}")

    # --- waiting ---------------------------------------------------------------------------------------

    def wait(self, read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], *, interval_s: float = 2.0,
             timeout_s: float | None = None, on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll ``read`` until ``done``; ``on_poll`` sees every answer (progress bars)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            state = read()
            if on_poll:
                on_poll(state)
            if done(state):
                return state
            if deadline is not None and time.monotonic() > deadline:
                raise FathomError(f"still not finished after {timeout_s:g} s")
            time.sleep(interval_s)


def _content_type(path: Path) -> str:
    """The audio type the server lists for the file's extension; the generic type otherwise (the extension decides)."""
    suffix = path.suffix.lower()
    return next((mime for mime, exts in CONTENT_TYPES.items() if suffix in exts), "application/octet-stream")
