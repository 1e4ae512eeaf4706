"""``fathom``: the command line for people who bring a folder of audio.

    fathom login http://127.0.0.1:8000 --key fk_...
    fathom datasets create calls --artifact-type glitch --artifact-type long_pause
    fathom datasets upload DATASET_ID ./recordings          # parallel, resumable
    fathom annotations create-set DATASET_ID
    fathom annotations import DATASET_ID SET_ID labels.csv  # or Audacity label tracks (one .txt per audio file)
    fathom annotations publish DATASET_ID SET_ID
    fathom train DATASET_ID SET_ID --artifact-type glitch --epochs 20 --watch
    fathom infer dataset-ID@production ./new_calls --out detections.jsonl

Every command talks to the API through ``FathomClient``; a refusal prints the server's message
and exits with status 1.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from serve_app.client import formats
from serve_app.client.api import FathomClient, FathomError

console = Console(stderr=True)  # progress and notes on stderr; results (ids, JSON) on stdout
CONFIRMED = {"normalizing", "embedding", "ready", "failed"}  # a dataset file past its upload
TRAINING_DONE = ("completed", "failed", "cancelled")


# --- configuration -----------------------------------------------------------------------------------


def config_path() -> Path:
    if os.environ.get("FATHOM_CLI_CONFIG"):
        return Path(os.environ["FATHOM_CLI_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "fathom" / "config.json"


def save_config(url: str, key: str) -> Path:
    """Written owner-only (0600) from the start: the key is a secret."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url.rstrip("/"), "key": key}, fh)
    os.chmod(path, 0o600)
    return path


def load_config() -> dict[str, str]:
    path = config_path()
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise click.ClickException(f"cannot read {path}: {e}") from None


class Context:
    def __init__(self, url: str | None, key: str | None):
        saved = load_config()
        self.url, self.key = url or saved.get("url"), key or saved.get("key")
        self._client: FathomClient | None = None

    @property
    def client(self) -> FathomClient:
        if not self.url or not self.key:
            raise click.ClickException("not logged in: run `fathom login URL --key KEY` (or set FATHOM_URL and FATHOM_API_KEY)")
        if self._client is None:
            self._client = FathomClient(self.url, self.key)
        return self._client


pass_ctx = click.make_pass_decorator(Context)


class Group(click.Group):
    """Turns a FathomError anywhere below into the server's message and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FathomError as e:
            raise click.ClickException(str(e)) from None


def emit(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True) if not isinstance(value, str) else value)


@click.group(cls=Group)
@click.option("--url", envvar="FATHOM_URL", help="Fathom's base URL (default: the one saved by login).")
@click.option("--key", envvar="FATHOM_API_KEY", help="API key (default: the one saved by login).")
@click.version_option(package_name="fathom", message="%(version)s")
@click.pass_context
def cli(ctx: click.Context, url: str | None, key: str | None) -> None:
    """Fathom: artifact detection and custom speech-to-text on your own audio."""
    ctx.obj = Context(url, key)


@cli.command()
@click.argument("url")
@click.option("--key", required=True, help="An API key of your organization.")
def login(url: str, key: str) -> None:
    """Check URL and KEY against the server and save them for later commands."""
    with FathomClient(url, key) as client:
        client.request("GET", "/api/v1/auth/api-keys", params={"page_size": 1})
    console.print(f"logged in to {url}; saved in {save_config(url, key)}")


# --- datasets and annotations -----------------------------------------------------------------------------


@cli.group(cls=Group)
def datasets() -> None:
    """Datasets of annotated audio for training detectors."""


@datasets.command("create")
@click.argument("name")
@click.option("--artifact-type", "types", multiple=True, required=True, help="An artifact type to annotate (repeat).")
@click.option("--description")
@pass_ctx
def datasets_create(obj: Context, name: str, types: tuple[str, ...], description: str | None) -> None:
    """Create a dataset; prints its id."""
    emit(obj.client.create_dataset(name, types, description)["id"])


def _transfer_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"), TimeRemainingColumn(), console=console,
    )


def upload_all(files: list[tuple[Path, str]], send, workers: int, label: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Send every (path, name) with ``send(path, name, progress)`` on ``workers`` threads under one bar
    (bytes, and files done of all); returns ({name: answer}, {name: error})."""
    done: dict[str, Any] = {}
    failed: dict[str, str] = {}
    total = sum(p.stat().st_size for p, _ in files)
    with _transfer_progress() as bar:
        task = bar.add_task(label, total=total, files=f"0/{len(files)} files")

        def one(path: Path, name: str) -> Any:
            return send(path, name, lambda n: bar.advance(task, n))

        pool = ThreadPoolExecutor(max_workers=max(workers, 1))
        futures = {pool.submit(one, p, name): (p, name) for p, name in files}
        try:
            for future in as_completed(futures):
                path, name = futures[future]
                try:
                    done[name] = future.result()
                except FathomError as e:
                    failed[name] = str(e)
                    bar.advance(task, path.stat().st_size)
                bar.update(task, files=f"{len(done) + len(failed)}/{len(files)} files")
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)  # the uploads under way finish; the rest never start
            bar.stop()
            finished = sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)
            console.print(f"interrupted after {finished} of {len(files)} files; the same command resumes")
            sys.exit(130)
        pool.shutdown()
    return done, failed


@datasets.command("upload")
@click.argument("dataset_id")
@click.argument("folder", type=click.Path(exists=True, path_type=Path))
@click.option("--workers", default=8, show_default=True, help="Uploads in parallel.")
@pass_ctx
def datasets_upload(obj: Context, dataset_id: str, folder: Path, workers: int) -> None:
    """Upload every audio file under FOLDER; files already confirmed in the dataset (by name) are skipped (resumable)."""
    client = obj.client
    files = formats.audio_files(folder)
    if not files:
        raise click.ClickException(f"no audio files under {folder} ({', '.join(formats.AUDIO_SUFFIXES)})")
    # A dataset knows a file by its name (the last path component): two files of one name would be one.
    clashes = sorted({p.name for p, _ in files if sum(q.name == p.name for q, _ in files) > 1})
    if clashes:
        raise click.ClickException(f"several files under {folder} are named {', '.join(clashes[:5])}; rename them first")
    existing = {a["original_filename"] for a in client.dataset_audio(dataset_id) if a["processing_status"] in CONFIRMED}
    todo = [(p, name) for p, name in files if p.name not in existing]
    skipped = len(files) - len(todo)
    if skipped:
        console.print(f"{skipped} of {len(files)} files are already in the dataset; skipping them")
    done, failed = upload_all(
        todo, lambda p, name, progress: client.upload_dataset_file(dataset_id, p, p.name, progress), workers, "uploading"
    )
    console.print(f"uploaded {len(done)}, skipped {skipped}, failed {len(failed)}")
    for name, error in sorted(failed.items()):
        console.print(f"  {name}: {error}")
    if failed:
        sys.exit(1)


@cli.group(cls=Group)
def annotations() -> None:
    """Annotation sets: create, import CSV or Audacity labels, publish."""


@annotations.command("create-set")
@click.argument("dataset_id")
@pass_ctx
def annotations_create_set(obj: Context, dataset_id: str) -> None:
    """Create a draft annotation set; prints its id."""
    emit(obj.client.create_annotation_set(dataset_id)["id"])


@annotations.command("import")
@click.argument("dataset_id")
@click.argument("set_id")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--audio", help="For one Audacity label file: the dataset file it labels (default: same name stem).")
@pass_ctx
def annotations_import(obj: Context, dataset_id: str, set_id: str, files: tuple[Path, ...], audio: str | None) -> None:
    """Import FILES into a draft set: CSV (.csv: filename, artifact_type, start/end) or Audacity label tracks
    (anything else: start<TAB>end<TAB>label, seconds; the audio file with the same name stem)."""
    rows: list[dict[str, Any]] = []
    try:
        for f in files:
            text = f.read_text()
            rows += formats.read_csv(text) if f.suffix.lower() == ".csv" else formats.read_audacity(text, audio or f.stem)
    except formats.FormatError as e:
        raise click.ClickException(f"{f}: {e}") from None
    items, unmatched = formats.match_audio(rows, obj.client.dataset_audio(dataset_id))
    if unmatched:
        raise click.ClickException(f"no dataset file matches {', '.join(unmatched[:10])}" + (" ..." if len(unmatched) > 10 else ""))
    created = 0
    for start in range(0, len(items), 1000):
        created += obj.client.add_annotations(dataset_id, set_id, items[start:start + 1000])["created"]
    console.print(f"imported {created} annotations from {len(files)} file(s)")


@annotations.command("publish")
@click.argument("dataset_id")
@click.argument("set_id")
@pass_ctx
def annotations_publish(obj: Context, dataset_id: str, set_id: str) -> None:
    """Publish a set (training reads published sets only)."""
    answer = obj.client.publish(dataset_id, set_id)
    console.print(f"published version {answer.get('version')} of set {set_id}")


# --- training ----------------------------------------------------------------------------------------------


def metrics_table(eval_metrics: dict[str, Any]) -> Table:
    table = Table(title="held-out validation (event-based)")
    for column in ("type", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for name, m in sorted((eval_metrics.get("per_class") or {}).items()):
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1_score']:.3f}", str(m["support"]))
    if "f1_score" in eval_metrics:
        table.add_row("all", f"{eval_metrics['precision']:.3f}", f"{eval_metrics['recall']:.3f}", f"{eval_metrics['f1_score']:.3f}",
                      str(sum(m["support"] for m in (eval_metrics.get("per_class") or {}).values())), style="bold")
    return table


def watch_training(client: FathomClient, job_id: str, interval_s: float = 2.0) -> dict[str, Any]:
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"training {job_id[:8]}", total=100, detail="queued")

        def show(job: dict[str, Any]) -> None:
            m = job.get("metrics") or {}
            parts = [job["status"]]
            if job.get("current_epoch"):
                parts.append(f"epoch {job['current_epoch']}/{(job.get('config') or {}).get('epochs', '?')}")
            if isinstance(m.get("train_loss"), (int, float)):
                parts.append(f"loss {m['train_loss']:.4f}")
            f1 = m.get("event_f1", m.get("val_frame_f1"))
            if isinstance(f1, (int, float)):
                parts.append(f"F1 {f1:.3f}")
            bar.update(task, completed=job.get("progress") or 0, detail="  ".join(parts))

        job = client.wait(lambda: client.training_job(job_id), lambda j: j["status"] in TRAINING_DONE, interval_s=interval_s, on_poll=show)
    if job["status"] != "completed":
        raise click.ClickException(f"training job {job_id} {job['status']}: {job.get('error_message')}")
    model = client.request("GET", f"/api/v1/models/{job['model_id']}")
    console.print(metrics_table(model.get("eval_metrics") or {}))
    console.print(f"model {job['model_id']}")
    return job


@cli.command()
@click.argument("dataset_id")
@click.argument("set_id")
@click.option("--artifact-type", "types", multiple=True, required=True, help="A type to learn (repeat).")
@click.option("--epochs", type=int)
@click.option("--registered-model", help="Register the model under this name (default: dataset-ID).")
@click.option("--config", "config_json", help="More training config as JSON, e.g. '{\"learning_rate\": 0.003}'.")
@click.option("--watch/--no-watch", default=False, help="Follow the job to its end.")
@pass_ctx
def train(obj: Context, dataset_id: str, set_id: str, types: tuple[str, ...], epochs: int | None, registered_model: str | None,
          config_json: str | None, watch: bool) -> None:
    """Start a detector training job on a published set; prints the job id."""
    try:
        config: dict[str, Any] = json.loads(config_json) if config_json else {}
    except ValueError as e:
        raise click.ClickException(f"--config is not JSON: {e}") from None
    config["artifact_types"] = list(types)
    if epochs is not None:
        config["epochs"] = epochs
    if registered_model:
        config["registered_model"] = registered_model
    job = obj.client.start_training(dataset_id, set_id, config)
    emit(job["id"])
    if watch:
        watch_training(obj.client, job["id"])


@cli.group(cls=Group)
def jobs() -> None:
    """Detector training jobs."""


@jobs.command("watch")
@click.argument("job_id")
@click.option("--interval", default=2.0, show_default=True)
@pass_ctx
def jobs_watch(obj: Context, job_id: str, interval: float) -> None:
    """A live bar (epoch, loss, F1) until the job ends, then the model's metrics table."""
    watch_training(obj.client, job_id, interval)


# --- inference ---------------------------------------------------------------------------------------------


@cli.command()
@click.argument("model")
@click.argument("folder", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Results file (a folder with --format audacity).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "audacity"]), default="jsonl", show_default=True)
@click.option("--threshold", type=float, help="Confidence threshold (default: the model's).")
@click.option("--workers", default=8, show_default=True)
@pass_ctx
def infer(obj: Context, model: str, folder: Path, out: Path, fmt: str, threshold: float | None, workers: int) -> None:
    """Run MODEL (a model UUID, name@version or name@alias) over every audio file under FOLDER."""
    client = obj.client
    files = formats.audio_files(folder)
    if not files:
        raise click.ClickException(f"no audio files under {folder}")
    job = client.create_inference_job(model, {"threshold": threshold} if threshold is not None else None)
    console.print(f"inference job {job['id']}")
    sent, failed = upload_all(files, lambda p, name, progress: client.upload_inference_file(job["id"], p, name, progress), workers, "uploading")
    if failed:
        console.print(f"{len(failed)} file(s) could not be uploaded: " + "; ".join(f"{n}: {e}" for n, e in sorted(failed.items())))
    with Progress(TextColumn("detecting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("detecting", total=len(sent))
        final = client.wait(
            lambda: client.inference_job(job["id"]),
            lambda j: j["status"] in ("completed", "failed", "cancelled") or j["processed_files"] >= j["total_files"],
            on_poll=lambda j: bar.update(task, completed=j["processed_files"]), interval_s=1.0,
        )
    if final["status"] in ("failed", "cancelled"):
        raise click.ClickException(f"inference job {job['id']} {final['status']}: {final.get('error_message')}")
    names = {answer["id"]: name for name, answer in sent.items()}
    records = formats.result_rows(final, names)
    if fmt == "jsonl":
        formats.write_jsonl(records, out)
    elif fmt == "csv":
        formats.write_csv(records, out)
    else:
        formats.write_audacity(records, out)
    bad = [r for r in records if r["status"] == "failed"]
    console.print(f"{len(records)} files, {sum(len(r['detections']) for r in records)} detections, {len(bad)} failed -> {out}")
    for r in bad:
        console.print(f"  {r['file']}: {r['error_message']}")


# --- custom speech-to-text ------------------------------------------------------------------------------------


@cli.group(cls=Group)
def stt() -> None:
    """Custom speech-to-text models and transcription."""


@stt.group("models", cls=Group)
def stt_models() -> None:
    """Custom models: create, upload data, run, watch."""


@stt_models.command("create")
@click.argument("name")
@click.option("--language", default="en", show_default=True)
@click.option("--base-model", default="general", show_default=True)
@click.option("--description")
@pass_ctx
def stt_create(obj: Context, name: str, language: str, base_model: str, description: str | None) -> None:
    """Create a custom model; prints its id."""
    emit(str(obj.client.create_custom_model(name, language, base_model, description)["id"]))


@stt_models.command("upload-data")
@click.argument("model_id", type=int)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--type", "kind", type=click.Choice(["train", "test"]), default="train", show_default=True)
@pass_ctx
def stt_upload(obj: Context, model_id: int, folder: Path, kind: str) -> None:
    """Upload every audio file under FOLDER with its transcript (the .txt of the same name beside it)."""
    pairs = [(p, p.with_suffix(".txt")) for p, _ in formats.audio_files(folder)]
    missing = [str(a) for a, t in pairs if not t.exists()]
    if missing:
        raise click.ClickException(f"no transcript beside {', '.join(missing[:5])}")
    with Progress(TextColumn("uploading pairs"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task("pairs", total=len(pairs))
        for audio, transcript in pairs:
            obj.client.upload_pair(model_id, audio, transcript, kind)
            bar.advance(task)
    console.print(f"uploaded {len(pairs)} {kind} pairs")


@stt_models.command("run")
@click.argument("model_id", type=int)
@click.option("--watch/--no-watch", default=False)
@pass_ctx
def stt_run(obj: Context, model_id: int, watch: bool) -> None:
    """Start training a custom model."""
    obj.client.start_stt_training(model_id)
    console.print(f"training custom_model_{model_id}")
    if watch:
        watch_stt(obj.client, model_id)


def watch_stt(client: FathomClient, model_id: int, interval_s: float = 2.0) -> dict[str, Any]:
    with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[detail]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("training", total=100, detail="")
        model = client.wait(
            lambda: client.custom_model(model_id), lambda m: m["training_status"] in (4, 5), interval_s=interval_s,
            on_poll=lambda m: bar.update(task, completed=m.get("training_progress") or 0, detail=m.get("status_message") or ""),
        )
    if model["training_status"] == 5:
        raise click.ClickException(f"custom_model_{model_id} failed: {model.get('error')}")
    metrics = model.get("training_metrics") or {}
    table = Table(title=f"custom_model_{model_id}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(metrics.items()):
        if isinstance(v, (int, float)):
            table.add_row(k, f"{v:.2f}")
    console.print(table)
    return model


@stt_models.command("watch")
@click.argument("model_id", type=int)
@pass_ctx
def stt_watch(obj: Context, model_id: int) -> None:
    """Follow a training run to its end, then its WER/CER."""
    watch_stt(obj.client, model_id)


@stt.command("transcribe")
@click.argument("model")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--language", default="en", show_default=True)
@click.option("--boost", "boost_terms", multiple=True, help="A term to favour (repeat).")
@click.option("--json", "as_json", is_flag=True, help="The whole answer (words with times) as JSON lines.")
@pass_ctx
def stt_transcribe(obj: Context, model: str, files: tuple[Path, ...], language: str, boost_terms: tuple[str, ...], as_json: bool) -> None:
    """Transcribe FILES with MODEL (a base model, custom_model_ID, custom_model_ID@version|alias)."""
    for f in files:
        answer = obj.client.transcribe(model, f, language, boost_terms)
        click.echo(json.dumps({"file": str(f), **answer}) if as_json else f"{f}\t{answer['text']}")


# --- registry and evaluations ----------------------------------------------------------------------------------


@cli.group(cls=Group)
def models() -> None:
    """Registered models: versions and aliases."""


@models.group("alias", cls=Group)
def alias() -> None:
    """Move and roll back aliases."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name")
@click.argument("version", type=int)
@click.option("--reason", default="", help="Why (kept in the alias history).")
@click.option("--force", is_flag=True, help="Past a promotion gate (needs a reason).")
@pass_ctx
def alias_set(obj: Context, name: str, alias_name: str, version: int, reason: str, force: bool) -> None:
    """Point NAME@ALIAS at VERSION."""
    answer = obj.client.set_alias(name, alias_name, version, reason, force)
    console.print(f"{name}@{alias_name} -> {answer['version']}")


@alias.command("rollback")
@click.argument("name")
@click.argument("alias_name")
@click.option("--to", "to_version", type=int, help="Default: the version the alias named before.")
@click.option("--reason", default="")
@pass_ctx
def alias_rollback(obj: Context, name: str, alias_name: str, to_version: int | None, reason: str) -> None:
    """Move NAME@ALIAS back."""
    answer = obj.client.rollback_alias(name, alias_name, reason, to_version)
    console.print(f"{name}@{alias_name} -> {answer['version']}")


@cli.group(cls=Group)
def evaluations() -> None:
    """Compare models on the same files."""


@evaluations.command("run")
@click.argument("models_", nargs=-1, required=True, metavar="MODEL...")
@click.option("--dataset", help="Detectors: the dataset ...")
@click.option("--set", "set_id", help="... and its published annotation set.")
@click.option("--custom-model", type=int, help="STT: the test pairs of this custom model.")
@click.option("--watch/--no-watch", default=True, show_default=True)
@pass_ctx
def evaluations_run(obj: Context, models_: tuple[str, ...], dataset: str | None, set_id: str | None, custom_model: int | None,
                    watch: bool) -> None:
    """Score 2-8 models of one kind on the same files; prints the evaluation's id."""
    if custom_model is not None:
        data: dict[str, Any] = {"custom_model_id": custom_model}
    elif dataset and set_id:
        data = {"dataset_id": dataset, "annotation_set_id": set_id}
    else:
        raise click.ClickException("give --dataset and --set (detectors) or --custom-model (STT)")
    evaluation = obj.client.create_evaluation(models_, data)
    emit(evaluation["id"])
    if watch:
        show_evaluation(obj.client, evaluation["id"], wait=True)


def show_evaluation(client: FathomClient, evaluation_id: str, wait: bool) -> None:
    if wait:
        with Progress(TextColumn("evaluating"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"), console=console) as bar:
            task = bar.add_task("evaluating", total=100)
            ev = client.wait(lambda: client.evaluation(evaluation_id), lambda e: e["status"] in ("completed", "failed"),
                             on_poll=lambda e: bar.update(task, completed=e.get("progress") or 0), interval_s=1.0)
    else:
        ev = client.evaluation(evaluation_id)
    if ev["status"] == "failed":
        raise click.ClickException(f"evaluation failed: {ev.get('error_message')}")
    if ev["status"] != "completed":
        console.print(f"evaluation {evaluation_id}: {ev['status']} ({ev.get('progress', 0):.0f}%)")
        return
    results = ev["results"]
    metric = results["metric"]
    table = Table(title=f"evaluation {evaluation_id[:8]} ({ev['kind']})")
    for column in ("model", metric, "failed files"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for m in results["models"]:
        value = (m.get("summary") or {}).get(metric)
        table.add_row(m["label"], "-" if value is None else f"{value:.3f}", str(m["failed_files"]))
    console.print(table)
    for c in results.get("comparisons", []):
        if c["difference"] is None:
            continue
        interval = f" (95% CI {c['ci_low']:+.3f} .. {c['ci_high']:+.3f})" if c["ci_low"] is not None else ""
        console.print(f"{metric}({c['b']}) - {metric}({c['a']}) = {c['difference']:+.3f}{interval} over {c['files']} files")


@evaluations.command("show")
@click.argument("evaluation_id")
@click.option("--wait/--no-wait", default=False)
@pass_ctx
def evaluations_show(obj: Context, evaluation_id: str, wait: bool) -> None:
    """An evaluation's summary per model and its paired comparisons."""
    show_evaluation(obj.client, evaluation_id, wait)


def main() -> None:
    cli(prog_name="fathom")


if __name__ == "__main__":
    main()
