"""Runs one claimed evaluation on the serving deployments and writes its rows and summary.

Predictions go through the Detector and Transcriber handles, the code that serves users, so
they batch with live traffic; the Detector returns its threshold sweep from the same forward
pass. Each (model, file) is scored as it returns (``train_jobs.eval_reports``) and written at
once, so a run that is interrupted goes on from its rows when it is claimed again; the
summary is computed from the stored rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from cluster import evaluations
from cluster.db import open_session
from cluster.evaluation_tables import Evaluation
from data_pipelines.audio import AudioDecodeError
from data_pipelines.events import Event
from schemas.settings import Settings
from serve_app.deployments.replica import ModelUnavailable
from train_jobs.eval_reports import SWEEP_THRESHOLDS, detector_row, file_score, row_errors, stt_row, summarize

log = logging.getLogger("fathom.evaluator")

CONCURRENCY = 16  # predictions in flight per evaluation: enough to fill the replicas' batches


class Interrupted(Exception):
    """A worker or dependency failed, not a file: the claim is given back and the run goes on later."""


def _events(items: list[list[Any]], types: list[str]) -> list[Event]:
    return [Event(t, int(s), int(e)) for t, s, e in items if t in types]


def _detections(items: list[dict[str, Any]], types: list[str]) -> list[Event]:
    return [Event(d["artifact_type"], d["start_ms"], d["end_ms"], d["confidence"]) for d in items if d["artifact_type"] in types]


class EvaluationRunner:
    def __init__(self, settings: Settings, detector: DeploymentHandle, transcriber: DeploymentHandle, interruptions: tuple[type[BaseException], ...]):
        self.settings = settings
        self.detector = detector
        self.transcriber = transcriber
        self.interruptions = interruptions
        self.lease_s = max(settings.lease_s, 300.0)

    async def run(self, evaluation_id: str, attempt: int) -> None:
        url = self.settings.database_url
        with open_session(url) as s:
            row = s.get(Evaluation, evaluation_id)
            kind, models, items, config = row.kind, list(row.models), list(row.items), dict(row.config)
        done = await asyncio.to_thread(evaluations.written, url, evaluation_id)
        self.timings = {"predict_s": 0.0, "score_s": 0.0}
        started = time.perf_counter()
        slots = asyncio.Semaphore(CONCURRENCY)
        lost = asyncio.Event()

        async def one(m: int, item: dict[str, Any]) -> None:
            async with slots:
                if lost.is_set():
                    return
                fields = await self._score(kind, models[m], item, config)
                if not await asyncio.to_thread(
                    evaluations.record_file, url, evaluation_id, attempt, lease_s=self.lease_s, total=len(models) * len(items),
                    model_index=m, item=item, **fields,
                ):
                    lost.set()

        tasks = [one(m, item) for m in range(len(models)) for item in items if (m, str(item["id"])) not in done]
        try:
            await asyncio.gather(*tasks)
        except ModelUnavailable as e:
            await asyncio.to_thread(evaluations.fail, url, evaluation_id, attempt, f"Model is unavailable: {e}")
            return
        except Interrupted as e:
            log.warning("evaluation %s interrupted (%s); it goes on from its rows at the next claim", evaluation_id, e)
            await asyncio.to_thread(evaluations.release, url, evaluation_id, attempt)
            return
        except Exception as e:  # a fault of the evaluation itself: it ends failed, with the reason
            log.exception("evaluation %s failed", evaluation_id)
            await asyncio.to_thread(evaluations.fail, url, evaluation_id, attempt, f"{type(e).__name__}: {e}")
            return
        if lost.is_set():
            log.warning("evaluation %s: claim %d lost its lease; another claim goes on", evaluation_id, attempt)
            return
        try:
            t0 = time.perf_counter()
            results = await asyncio.to_thread(self._results, evaluation_id, kind, models, items, config)
            results["timings"] = {
                "run_s": round(time.perf_counter() - started, 3),  # this claim's run, summary included
                "predict_s": round(self.timings["predict_s"], 3),  # summed over concurrent predictions
                "score_s": round(self.timings["score_s"], 3),  # per-file scoring, on the Dispatcher's loop
                "summary_s": round(time.perf_counter() - t0, 3),
                "rows_this_run": len(tasks),
            }
        except Exception as e:
            log.exception("evaluation %s could not be summarized", evaluation_id)
            await asyncio.to_thread(evaluations.fail, url, evaluation_id, attempt, f"{type(e).__name__}: {e}")
            return
        await asyncio.to_thread(evaluations.finish, url, evaluation_id, attempt, results)

    async def _score(self, kind: str, model: dict[str, Any], item: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """The fields of one row: scored, or failed with the file's own error."""
        try:
            t0 = time.perf_counter()
            if kind == "detector":
                types = config["artifact_types"]
                result = await self.detector.options(multiplexed_model_id=model["target"]).detect.remote(
                    audio_key=item["audio_key"], config=config["inference"], sweep=SWEEP_THRESHOLDS
                )
                t1 = time.perf_counter()
                row = detector_row(
                    _events(item["events"], types),
                    _detections(result["detections"], types),
                    {float(t): _detections(d, types) for t, d in result["sweep"].items()},
                    types,
                    result["duration_ms"],
                    collar_ms=config["collar_ms"],
                    offset_share=config["offset_share"],
                )
            else:
                result = await self.transcriber.options(multiplexed_model_id=model["target"]).transcribe.remote(
                    audio_key=item["audio_key"], boost_terms=config["boost_terms"]
                )
                t1 = time.perf_counter()
                keyterms = list(dict.fromkeys([*config["boost_terms"], *config["keyterms"]]))
                row = stt_row(item["reference"], result["text"], keyterms)
        except Exception as e:
            cause = e.cause if isinstance(e, RayTaskError) and getattr(e, "cause", None) else e
            if isinstance(cause, ModelUnavailable):
                raise cause from None
            if isinstance(cause, self.interruptions):
                raise Interrupted(type(cause).__name__) from None
            message = str(cause) if isinstance(cause, AudioDecodeError) else f"{type(cause).__name__}: {cause}"
            return {"error": message[:2000]}
        fields = {"row": row, "score": file_score(kind, row), "errors": row_errors(row)}
        self.timings["predict_s"] += t1 - t0
        self.timings["score_s"] += time.perf_counter() - t1
        return fields

    def _results(self, evaluation_id: str, kind: str, models: list[dict], items: list[dict], config: dict) -> dict[str, Any]:
        """Summaries over the files every model scored, failures counted per model; comparisons paired by file."""
        with open_session(self.settings.database_url) as s:
            rows = evaluations.file_rows(s, evaluation_id)
            by_key = {(r.model_index, r.item_id): r for r in rows}
        order = [str(item["id"]) for item in items]
        scored = [i for i in order if all(by_key.get((m, i)) and by_key[(m, i)].status == "completed" for m in range(len(models)))]
        rows_by_model = [[by_key[(m, i)].row for i in scored] for m in range(len(models))]
        report = summarize(kind, rows_by_model, config.get("artifact_types") or (), seed=config.get("seed", 0))
        refs = [m["reference"] for m in models]
        return {
            "metric": report["metric"],
            "models": [
                {
                    "reference": m["reference"],
                    "label": m["label"],
                    "failed_files": sum(1 for i in order if by_key.get((k, i)) and by_key[(k, i)].status == "failed"),
                    "summary": summary if scored else None,
                }
                for k, (m, summary) in enumerate(zip(models, report["summaries"]))
            ],
            "comparisons": [{**c, "a": refs[c["a"]], "b": refs[c["b"]]} for c in report["comparisons"]],
        }
