"""`make bench-ace-step`: the cost of ACE-Step 1.5 turbo on this machine, from full-size parts of random weights.

A model of random weights costs what the real one costs, so these are real figures: the whole pipeline end to end
for one piece (load with and without the export's sha256 check, encode, diffusion, decode, peak memory, in a
process of its own), one DiT evaluation at several piece lengths (fp32 and int8), one VAE decode chunk, and the
resulting time for a 240 s piece (8 DiT steps + its decode chunks). In the same run, torch's own forward of the
same DiT architecture (when torch is installed) gives the reference the ONNX step is compared with.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lofi_engine.ace_step.pipeline import DECODE_FRAMES, DECODE_OVERLAP, make_plan
from lofi_engine.inference.providers import default_threads, session_options

LATENT_RATE = 25
HOP = 1920
CONDITION_TOKENS = 80
"""Lyric ([inst]) + timbre + a one-line prompt in the template: the cross-attention length of a typical request."""


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def dit_feeds(duration: float, hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    plan = make_plan(duration, math.ceil(duration * LATENT_RATE), 2, HOP, 8)
    sigma = np.array([0.75], dtype=np.float32)
    return {
        "hidden_states": rng.standard_normal((1, plan.dit_frames, 64), dtype=np.float32),
        "timestep": sigma,
        "timestep_r": sigma,
        "encoder_hidden_states": rng.standard_normal((1, CONDITION_TOKENS, hidden), dtype=np.float32),
        "context_latents": rng.standard_normal((1, plan.dit_frames, 128), dtype=np.float32),
    }


def time_runs(session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return times


def measure_dit(path: Path, threads: int, durations: list[float]) -> dict[str, Any]:
    started = time.perf_counter()
    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    result: dict[str, Any] = {"load_sec": time.perf_counter() - started, "steps": {}}
    hidden = next(i.shape[2] for i in session.get_inputs() if i.name == "encoder_hidden_states")
    hidden = hidden if isinstance(hidden, int) else 2048
    rng = np.random.default_rng(0)
    for duration in durations:
        runs = 2 if duration <= 60 else 1  # the first run of a new length also sizes ORT's arena
        times = time_runs(session, dit_feeds(duration, hidden, rng), runs)
        result["steps"][str(duration)] = {"best_sec": min(times), "all_sec": times}
        print(f"  {path.name} step at {duration:g} s: {min(times):.2f} s ({', '.join(f'{t:.2f}' for t in times)})", flush=True)
    del session
    gc.collect()
    return result


def measure_vae(path: Path, threads: int) -> dict[str, Any]:
    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    frames = DECODE_FRAMES + 2 * DECODE_OVERLAP
    latents = np.random.default_rng(0).standard_normal((1, 64, frames), dtype=np.float32)
    times = time_runs(session, {"latents": latents}, 2)
    print(f"  vae_decoder chunk of {frames} frames: {min(times):.2f} s", flush=True)
    return {"chunk_frames": frames, "chunk_sec": min(times), "all_sec": times}


def measure_torch(threads: int, duration: float) -> dict[str, Any] | None:
    """The same DiT architecture in torch (random weights, same config), one forward at ``duration``."""
    try:
        import torch
        from diffusers.models.transformers.ace_step_transformer import (
            AceStepTransformer1DModel,
        )
    except ImportError:
        return None
    torch.set_num_threads(threads)
    model = AceStepTransformer1DModel(
        hidden_size=2048, intermediate_size=6144, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8,
        head_dim=128, sliding_window=128, in_channels=192, audio_acoustic_hidden_dim=64, patch_size=2,
    ).eval()
    feeds = {k: torch.from_numpy(v) for k, v in dit_feeds(duration, 2048, np.random.default_rng(0)).items()}
    times = []
    with torch.no_grad():
        for _ in range(2):
            started = time.perf_counter()
            model(**feeds, return_dict=False)
            times.append(time.perf_counter() - started)
    print(f"  torch step at {duration:g} s: {min(times):.2f} s", flush=True)
    return {"duration_sec": duration, "best_sec": min(times), "all_sec": times}


def measure_pipeline(model_dir: Path, threads: int, duration: float, variant: str) -> dict[str, Any]:
    """`AceStep.load` + `generate` as the engine runs them; the first load checks every file's sha256."""
    from lofi_engine.ace_step.pipeline import AceStep
    from lofi_engine.store.ace_step_manifest import VERIFIED_STAMP

    (model_dir / VERIFIED_STAMP).unlink(missing_ok=True)
    started = time.perf_counter()
    AceStep.load(model_dir, variant=variant, device="cpu", threads=threads)
    first_load = time.perf_counter() - started
    gc.collect()
    started = time.perf_counter()
    model = AceStep.load(model_dir, variant=variant, device="cpu", threads=threads)
    load = time.perf_counter() - started
    stamps: list[float] = []
    started = time.perf_counter()
    piece = model.generate("slow ambient piano", duration_sec=duration, seed=1, on_step=lambda d, t: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - started
    plan = model.plan(duration)
    steps = np.diff([started] + stamps)
    return {
        "variant": variant, "duration_sec": duration, "first_load_sec": first_load, "load_sec": load, "wall_sec": wall,
        "encode_sec": float(steps[0] - np.median(steps[1 : plan.steps])),
        "diffusion_sec": float(stamps[plan.steps - 1] - started), "decode_sec": float(stamps[-1] - stamps[plan.steps - 1]),
        "audio_shape": list(piece.audio.shape), "peak_rss_gb": peak_rss_gb(),
    }


def in_subprocess(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "lofi_engine.dev.bench_ace_step", *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def estimate(step_sec: float, chunk_sec: float, duration: float) -> dict[str, float]:
    plan = make_plan(duration, math.ceil(duration * LATENT_RATE), 2, HOP, 8)
    diffusion = plan.steps * step_sec
    decode = len(plan.chunks) * chunk_sec
    return {"diffusion_sec": diffusion, "decode_sec": decode, "total_sec": diffusion + decode, "chunks": len(plan.chunks)}


def report(results: dict[str, Any]) -> str:
    lines = [f"ACE-Step 1.5 turbo, full-size random parts — {results['machine']}, {results['threads']} threads"]
    for run in results.get("pipeline", []):
        lines.append(
            f"whole pipeline, {run['variant']}, {run['duration_sec']:g} s piece: load {run['first_load_sec']:.1f} s with the sha256 check, "
            f"{run['load_sec']:.1f} s after; encode {run['encode_sec']:.1f} s + diffusion {run['diffusion_sec']:.1f} s + "
            f"decode {run['decode_sec']:.1f} s = {run['wall_sec']:.1f} s; peak RSS {run['peak_rss_gb']:.1f} GB"
        )
    for variant in ("fp32", "int8"):
        dit = results.get(variant)
        if not dit:
            continue
        lines.append(f"DiT {variant}: load {dit['load_sec']:.1f} s")
        for duration, step in dit["steps"].items():
            lines.append(f"  one DiT step, {float(duration):>5g} s piece ({math.ceil(float(duration) * LATENT_RATE) // 2} tokens)  {step['best_sec']:8.2f} s")
    vae = results["vae"]
    lines.append(f"VAE decode, one chunk ({vae['chunk_frames']} frames: {DECODE_FRAMES // LATENT_RATE} s + context)  {vae['chunk_sec']:.2f} s")
    for variant, guess in results["estimate_240"].items():
        lines.append(
            f"240 s piece, {variant}: 8 steps {guess['diffusion_sec']:.0f} s + {guess['chunks']} decode chunks "
            f"{guess['decode_sec']:.0f} s = {guess['total_sec'] / 60:.1f} min"
        )
    if results.get("torch"):
        ours = results["fp32"]["steps"].get(str(results["torch"]["duration_sec"]))
        if ours:
            lines.append(f"torch DiT step at {results['torch']['duration_sec']:g} s: {results['torch']['best_sec']:.2f} s "
                         f"→ ONNX Runtime {results['torch']['best_sec'] / ours['best_sec']:.2f}× faster")
    lines.append(f"peak RSS {results['peak_rss_gb']:.1f} GB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lofi_engine.dev.bench_ace_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True, help="the folder `make bench-models` wrote ace-step-full into")
    parser.add_argument("--durations", default="10,30,60,240", help="piece lengths to time one DiT step at (seconds)")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--skip-int8", action="store_true")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--pipeline-duration", type=float, default=30.0, help="the piece the whole pipeline composes")
    parser.add_argument("--json", type=Path, default=Path("bench-ace-step.json"))
    parser.add_argument("--step", choices=("pipeline",), help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step == "pipeline":
        print(json.dumps(measure_pipeline(args.models, args.threads, args.pipeline_duration, args.variant)))
        return 0
    durations = [float(d) for d in args.durations.split(",")]
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}", "threads": args.threads}
    if (args.models / "manifest.json").is_file():
        common = ["--models", str(args.models), "--threads", str(args.threads), "--pipeline-duration", str(args.pipeline_duration)]
        variants = ["fp32"] + ([] if args.skip_int8 else ["int8"])
        results["pipeline"] = [in_subprocess("--step", "pipeline", "--variant", v, *common) for v in variants]
        for run in results["pipeline"]:
            print(f"  whole pipeline, {run['variant']}: {run['wall_sec']:.1f} s for {run['duration_sec']:g} s", flush=True)
    results["fp32"] = measure_dit(args.models / "dit.onnx", args.threads, durations)
    if not args.skip_int8 and (args.models / "dit.int8.onnx").is_file():
        results["int8"] = measure_dit(args.models / "dit.int8.onnx", args.threads, durations)
    results["vae"] = measure_vae(args.models / "vae_decoder.onnx", args.threads)
    longest = str(max(durations))
    results["estimate_240"] = {
        v: estimate(results[v]["steps"][longest]["best_sec"], results["vae"]["chunk_sec"], 240.0) for v in ("fp32", "int8") if v in results
    } if longest == "240.0" else {}
    results["peak_rss_gb"] = peak_rss_gb()
    if not args.skip_torch:
        results["torch"] = measure_torch(args.threads, 30.0)
    text = report(results)
    print("\n" + text)
    args.json.write_text(json.dumps({**results, "report": text}, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
