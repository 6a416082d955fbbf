"""`make bench`: where the time goes on a full-size MusicGen-small of random weights (costs equal the real one's).

In one run, each measurement in a fresh process: this machine's read bandwidth (the floor every step is held
against), the in-place decoder (fp32, int8, int4) and the naive `present`→`past` loop on the same files (step time
by position, 10 s and 30 s end to end, peak RSS, load), transformers' own PyTorch `generate` on the same weights,
the logits of the derived graphs against the published one's, the ETA's honesty through `lofi serve`, the radio's
real-time factor per variant, and a per-operator profile of a step for every variant. Prints issue 14's table with
each target met or missed, and writes it all as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from lofi_engine.dev.bench_editor import measure_editor
from lofi_engine.dev.bench_encoder import measure_encoder
from lofi_engine.dev.bench_live import measure_first_sound, measure_link, measure_radio_from_audio, measure_radio_live
from lofi_engine.musicgen.model import MusicGen
from lofi_engine.musicgen.text import encode_prompt
from lofi_engine.store import musicgen_files as files

PROMPT = "lofi hip hop, jazzy piano"
POSITION_RANGES = ((0, 100), (400, 500), (1400, 1500))


def read_bandwidth(threads: int, gigabytes: float = 1.0, repeats: int = 5) -> float:
    """Bytes read per second by ``threads`` threads summing their part of a 1 GB array (best of ``repeats``)."""
    data = np.ones(int(gigabytes * 1e9 / 4), dtype=np.float32)
    parts = np.array_split(data, threads)
    best = 0.0
    for _ in range(repeats):
        workers = [threading.Thread(target=np.sum, args=(part,)) for part in parts]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, data.nbytes / (time.perf_counter() - started))
    return best


class NaiveDecoder:
    """The loop MusicGPT runs: ``session.run`` on the merged file, every ``present`` copied into ``past``."""

    def __init__(self, session: Any) -> None:
        self.session, self.dtype, self.merged, self.in_place = session, np.float32, True, False
        self.names = [o.name for o in session.get_outputs()]
        self.with_past = self.first = session

    def start(self, input_ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray, capacity: int) -> np.ndarray:
        self.feeds = {"encoder_hidden_states": hidden.astype(np.float32), "encoder_attention_mask": mask}
        for i in self.session.get_inputs():
            if i.name.startswith("past_key_values."):
                self.feeds[i.name] = np.zeros((hidden.shape[0], i.shape[1], 0, i.shape[3]), np.float32)
        return self._run(input_ids, False)

    def step(self, input_ids: np.ndarray) -> np.ndarray:
        return self._run(input_ids, True)

    def release(self) -> None:
        self.feeds = {}

    def _run(self, input_ids: np.ndarray, use_cache: bool) -> np.ndarray:
        outputs = dict(zip(self.names, self.session.run(None, {**self.feeds, "input_ids": input_ids, "use_cache_branch": np.array([use_cache])})))
        for name, value in outputs.items():
            if name.startswith("present.") and (".decoder." in name or not use_cache):
                self.feeds["past_key_values." + name[len("present."):]] = value
        return outputs["logits"][:, -1, :].astype(np.float32)


def step_weight_bytes(model_dir: Path, quantize: str | None = None) -> int:
    """Bytes of weights one in-place step reads: the derived step graph's initializers."""
    import tempfile

    from lofi_engine.musicgen import inplace_graph

    with tempfile.TemporaryDirectory() as work:
        inplace_graph.build(model_dir, files.choose_decoder_form(model_dir, "auto"), Path(work), quantize_int4=quantize == "int4",
                            accuracy_level=inplace_graph.INT4_ACCURACY_LEVEL)
        return (Path(work) / (inplace_graph.STEP + ".data")).stat().st_size


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def kv_bytes(model: MusicGen, position: int, rows: int = 2) -> int:
    """Self-attention cache bytes read by one step at ``position`` (both halves of guidance)."""
    layers = heads = head_dim = 0
    for i in model.decoder.with_past.get_inputs():
        if i.name.startswith("past_key_values.") and i.name.endswith(".decoder.key"):
            layers += 1
            heads, head_dim = i.shape[1], i.shape[3]
    itemsize = np.dtype(model.decoder.dtype).itemsize
    return 2 * layers * rows * heads * head_dim * position * itemsize


def timed_generation(model: MusicGen, duration: float, seed: int = 0) -> dict[str, Any]:
    stamps: list[float] = []
    first_audio: list[float] = []
    started = time.perf_counter()
    out = model.generate(
        PROMPT, duration_sec=duration, seed=seed, on_step=lambda d, t: stamps.append(time.perf_counter()),
        on_chunk=lambda audio, start: first_audio.append(time.perf_counter() - started),
    )
    wall = time.perf_counter() - started
    steps = np.diff([started] + stamps)
    return {"wall_sec": wall, "step_sec": steps.tolist(), "audio_sec": len(out.audio) / out.sample_rate, "first_audio_sec": first_audio[0]}


def timed_load(model_dir: Path, threads: int, optimized: Path, mode: str = "inplace", quantize: str | None = None) -> tuple[MusicGen, dict[str, Any]]:
    loads: dict[str, float] = {}
    mark = [time.perf_counter()]

    def loaded(name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        loads[name] = now - mark[0]
        mark[0] = now

    started = time.perf_counter()
    model = MusicGen.load(model_dir, device="cpu", threads=threads, on_progress=loaded, optimized_cache=optimized,
                          in_place=mode == "inplace", quantize=quantize)
    if mode == "naive":
        import onnxruntime as ort

        from lofi_engine.inference.providers import session_options

        model.decoder = NaiveDecoder(ort.InferenceSession(str(model_dir / files.DECODER_MERGED), session_options(threads), providers=["CPUExecutionProvider"]))
    return model, {"load_sec": time.perf_counter() - started, "load_per_file_sec": loads, "model_version": model.model_version}


def measure_ours(model_dir: Path, threads: int, durations: tuple[float, ...], optimized: Path, mode: str = "inplace", quantize: str | None = None) -> dict[str, Any]:
    """Runs in its own process (see ``in_subprocess``), so peak RSS is this measurement's alone."""
    model, result = timed_load(model_dir, threads, optimized, mode, quantize)
    result["decoder"] = type(model.decoder).__name__

    hidden_times = []
    for _ in range(10):
        t = time.perf_counter()
        encode_prompt(model.tokenizer, model.text_encoder, PROMPT, guidance=True)
        hidden_times.append(time.perf_counter() - t)
    result["text_encoder_sec"] = statistics.median(hidden_times)

    for frames in (500, 1500):
        codes = np.random.default_rng(0).integers(0, 2048, (4, frames))
        t = time.perf_counter()
        model.decode_audio(codes)
        result[f"encodec_{frames // 50}s_sec"] = time.perf_counter() - t

    for duration in durations:
        run = timed_generation(model, duration)
        key = f"{duration:g}s"
        result[f"wall_{key}_sec"] = run["wall_sec"]
        if run["first_audio_sec"] is not None:
            result[f"first_audio_{key}_sec"] = run["first_audio_sec"]
        steps = run["step_sec"]
        for lo, hi in POSITION_RANGES:
            if len(steps) >= hi:
                result[f"step_ms_{lo}_{hi}"] = 1000 * statistics.median(steps[lo:hi])
    result["peak_rss_gb"] = peak_rss_gb()
    result["kv_bytes_1450"] = kv_bytes(model, 1450)
    return result


def teacher_forced(model: MusicGen, ids: np.ndarray, prefill: int) -> np.ndarray:
    hidden, mask = encode_prompt(model.tokenizer, model.text_encoder, PROMPT, guidance=True)
    rows = hidden.shape[0]
    out = [model.decoder.start(np.tile(ids[:, :prefill], (rows, 1)), hidden, mask, capacity=ids.shape[1])]
    for position in range(prefill, ids.shape[1] - 1):
        out.append(model.decoder.step(np.tile(ids[:, position : position + 1], (rows, 1))))
    return np.stack(out)


def measure_divergence(model_dir: Path, threads: int, optimized: Path, quantize: str | None) -> dict[str, Any]:
    """Logits of the in-place (or int4) decoder against the published graph's along the same random tokens:
    a prefill of 1, 400 and 1400 positions, then 30 steps each."""
    reference = MusicGen.load(model_dir, device="cpu", threads=threads, optimized_cache=optimized, in_place=False)
    ours = MusicGen.load(model_dir, device="cpu", threads=threads, optimized_cache=optimized, quantize=quantize)
    ids = np.random.default_rng(1).integers(0, 2048, (4, 1431))
    result: dict[str, Any] = {}
    for prefill in (1, 400, 1400):
        a, b = teacher_forced(ours, ids[:, : prefill + 31], prefill), teacher_forced(reference, ids[:, : prefill + 31], prefill)
        result[f"max_abs_logit_diff_from_{prefill}"] = float(np.abs(a - b).max())
        result[f"argmax_agreement_from_{prefill}"] = float((a.argmax(-1) == b.argmax(-1)).mean())
        result[f"logit_scale_from_{prefill}"] = float(np.abs(b).max())
    return result


def measure_transformers(checkpoint: Path, threads: int, duration: float) -> dict[str, Any] | None:
    try:
        import torch
        from tokenizers import Tokenizer
        from transformers import MusicgenForConditionalGeneration
    except ImportError:
        return None
    torch.set_num_threads(threads)
    t = time.perf_counter()
    model = MusicgenForConditionalGeneration.from_pretrained(checkpoint).eval()  # sdpa wherever supported
    load = time.perf_counter() - t
    ids = torch.tensor([Tokenizer.from_file(str(checkpoint.parent / "musicgen-full" / files.TOKENIZER)).encode(PROMPT).ids])
    frames = round(duration * 50)
    torch.manual_seed(0)
    with torch.inference_mode():
        t = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, guidance_scale=3.0, max_new_tokens=frames + 3)
        wall = time.perf_counter() - t
    return {"load_sec": load, f"wall_{duration:g}s_sec": wall, "torch": torch.__version__}


def profile_step(model_dir: Path, threads: int, optimized: Path, quantize: str | None, position: int = 450, steps: int = 30) -> dict[str, Any]:
    """Where a step's time goes at ``position``: ONNX Runtime's per-operator profile of the last ``steps`` steps,
    milliseconds per step by operator type."""
    import tempfile

    from lofi_engine.inference import optimized_graphs

    plain = optimized_graphs.session_options
    work = Path(tempfile.mkdtemp(prefix="lofi-profile-"))

    def profiled(threads: int | None, arena: bool = True) -> Any:
        options = plain(threads, arena)
        options.enable_profiling = True
        options.profile_file_prefix = str(work / "step")
        return options

    optimized_graphs.session_options = profiled  # type: ignore[assignment]
    model = MusicGen.load(model_dir, device="cpu", threads=threads, optimized_cache=optimized, quantize=quantize)
    hidden, mask = encode_prompt(model.tokenizer, model.text_encoder, PROMPT, guidance=True)
    ids = np.random.default_rng(2).integers(0, 2048, (8, position + steps + 1))
    model.decoder.start(ids[:, :position], hidden, mask, capacity=position + steps + 1)
    walls = []
    for k in range(steps):
        t = time.perf_counter()
        model.decoder.step(ids[:, position + k : position + k + 1])
        walls.append(time.perf_counter() - t)
    trace = json.loads(Path(model.decoder.step_session.end_profiling()).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in trace if e.get("name") == "model_run")[-steps:]
    by_op: dict[str, float] = {}
    for e in trace:
        op = e.get("args", {}).get("op_name")
        if e.get("cat") == "Node" and op and e["name"].endswith("_kernel_time") and any(lo <= e["ts"] <= hi for lo, hi in runs):
            by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1000 / steps
    shutil.rmtree(work, ignore_errors=True)
    return {"position": position, "step_ms": 1000 * statistics.median(walls), "ms_by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]))}


def measure_radio(model_dir: Path, threads: int, optimized: Path, quantize: str | None) -> dict[str, Any]:
    from lofi_engine.dev.bench_radio import measure_stream, window_table

    model = MusicGen.load(model_dir, device="cpu", threads=threads, optimized_cache=optimized, quantize=quantize)
    return {**measure_stream(model), "predicted_rtf": window_table(model.costs), "costs_learned_from_jobs": model.costs.jobs}


def measure_eta(model_dir: Path, threads: int, optimized: Path, pieces: int = 3, duration: float = 20.0) -> dict[str, Any]:
    """Through `lofi serve`, with the benchmark's graphs but none of its learned costs: the first job ever on this
    machine, then a fresh engine (a new `lofi serve`) composing ``pieces`` pieces with what that job taught it."""
    import tempfile

    from lofi_engine.dev.bench_eta import cache_without_costs, serve_pieces

    with tempfile.TemporaryDirectory(prefix="lofi-eta-") as work:
        cache_without_costs(optimized, Path(work))
        first = serve_pieces(model_dir, Path(work), threads, 1, duration, first_seed=100)
        return {"fresh engine": serve_pieces(model_dir, Path(work), threads, pieces, duration), "first job ever": first}


VARIANTS = (("fp32", "musicgen-full", None), ("int8", "musicgen-full-int8", None), ("int4", "musicgen-full", "int4"))
FLOOR_TARGET = 1.15
TARGETS = [
    # (label, value from the results, met when)
    ("fp32 steps ≤ 1.15 × floor (worst of the three ranges)", lambda r: max(r["floor_ratio"]["fp32"].values()), lambda v: v <= FLOOR_TARGET),
    ("int8 steps ≤ 1.15 × floor (worst of the three ranges)", lambda r: max(r["floor_ratio"]["int8"].values()), lambda v: v <= FLOOR_TARGET),
    ("fp32 10 s ≥ 1.05 × the naive loop", lambda r: r["over_naive"]["fp32"]["10"], lambda v: v >= 1.05),
    ("fp32 30 s ≥ 1.1 × the naive loop", lambda r: r["over_naive"]["fp32"]["30"], lambda v: v >= 1.1),
    ("fp32 10 s ≥ 1.5 × transformers' generate", lambda r: r["transformers"]["wall_10s_sec"] / r["fp32"]["wall_10s_sec"], lambda v: v >= 1.5),
    ("int8 10 s ≥ 1.6 × the naive int8 loop", lambda r: r["over_naive"]["int8"]["10"], lambda v: v >= 1.6),
    ("int8 30 s ≥ 1.8 × the naive int8 loop", lambda r: r["over_naive"]["int8"]["30"], lambda v: v >= 1.8),
    ("int4 30 s real-time factor ≤ 1.0 (moonshot)", lambda r: r["int4"]["wall_30s_sec"] / 30, lambda v: v <= 1.0),
    ("fp32 30 s peak RSS ≤ 3.5 GB", lambda r: r["fp32"]["peak_rss_gb"], lambda v: v <= 3.5),
    ("fp32 warm load ≤ 3 s", lambda r: r["fp32"]["load_sec"], lambda v: v <= 3.0),
    ("in-place logits within 1e-4 of the published graph's", lambda r: max(v for k, v in r["divergence fp32"].items() if k.startswith("max_abs")), lambda v: v <= 1e-4),
    ("ETA worst error after 10 % ≤ 10 % (every piece of a fresh engine)", lambda r: max(p["worst_eta_error"] for p in r["eta"]["fresh engine"]), lambda v: v <= 0.10),
]


def report(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']}, {results['threads']} threads; read bandwidth {results['read_gbps']:.1f} GB/s (best of several passes over 1 GB)", ""]
    lines.append(f"{'':<6} {'positions':<10} {'step ms':>8} {'floor ms':>9} {'× floor':>8} {'naive ms':>9}")
    for label, *_ in VARIANTS:
        r, naive = results.get(label) or {}, results.get(f"{label} naive") or {}
        for lo, hi in POSITION_RANGES:
            step, nv = r.get(f"step_ms_{lo}_{hi}"), naive.get(f"step_ms_{lo}_{hi}")
            floor, ratio = results["floor_ms"][label][f"{lo}-{hi}"], results["floor_ratio"][label].get(f"{lo}-{hi}")
            lines.append(f"{label:<6} {lo:>4}–{hi:<5} {step or float('nan'):8.1f} {floor:9.1f} {ratio or float('nan'):8.2f} {nv or float('nan'):9.1f}")
    lines.append("")
    for label, *_ in VARIANTS:
        r, naive = results[label], results.get(f"{label} naive") or {}
        parts = []
        for d in ("10", "30"):
            ours, theirs = r.get(f"wall_{d}s_sec"), naive.get(f"wall_{d}s_sec")
            if ours:
                parts.append(f"{d} s in {ours:.1f} s (RTF {ours / float(d):.2f}" + (f"; naive {theirs:.1f} s, {theirs / ours:.2f}×)" if theirs else ")"))
        lines.append(f"{label}: " + ", ".join(parts) + f"; peak RSS {r['peak_rss_gb']:.2f} GB; load warm {r['load_sec']:.2f} s / first {results[label + ' first load']['load_sec']:.1f} s")
    if results.get("transformers"):
        t = results["transformers"]
        lines.append(f"transformers {t['torch']} (PyTorch) generate, 10 s: {t['wall_10s_sec']:.1f} s ({t['wall_10s_sec'] / results['fp32']['wall_10s_sec']:.2f}× ours)")
    lines.append("")
    for key in ("divergence fp32", "divergence int4"):
        lines.append(f"{key}: " + ", ".join(f"{k} {v:.3g}" for k, v in results[key].items()))
    lines.append("")
    for label, pieces in results["eta"].items():
        lines.append(f"ETA, {label}: " + ", ".join(f"piece {p['piece']} worst {100 * p['worst_eta_error']:.1f} % (at {p['at_percent']} %, {p['generation_sec']:.0f} s)" for p in pieces))
    lines.append("")
    for variant in ("small-int8", "small"):
        f = results.get(f"first sound {variant}")
        if f:
            lines.append(f"first sound, {variant}, {f['duration_sec']:g} s with play: true (lofi serve, mpv in real time): {f['first_sound_sec']:.1f} s; "
                         f"composed in {f['complete_sec']:.1f} s (heard only then, before: {f['first_sound_over_complete']:.2f}× of that); "
                         f"{f['buffering_waits']} wait(s); radio_start to first sound {f['radio_first_sound_sec']:.1f} s")
    for variant in ("small-int8", "small"):
        r = results.get(f"radio live {variant}")
        if r:
            lines.append(f"radio, {variant}, {r['minutes']:g} min through lofi serve with mpv: honest RTF {r['continuing_rtf']:.2f} (generation s per s of new "
                         f"music, continuing windows), {r['new_music_sec']:.0f} s of new music, {r['rotation_sec']:.0f} s heard again in rotation"
                         + (f"; cores used: {r['cores_used_by']}" if r.get("cores_used_by") else ""))
    if results.get("encoder"):
        r = results["encoder"]
        lines.append(f"EnCodec encoder (encodec_32khz config, random weights): {r['audio_sec']:g} s of audio in {r['encode_sec']:.2f} s, transformers' "
                     f"encode {r['transformers_encode_sec']:.2f} s ({r['transformers_encode_sec'] / r['encode_sec']:.2f}×); derived and loaded in "
                     f"{r['derive_and_load_sec']:.1f} s; codes equal to transformers': {r['codes_equal']} ({r['codes_differing']} of {r['codes']} differ)")
    if results.get("link"):
        r = results["link"]
        lines.append(f"engine over a command ({r['variant']}, `lofi engine --stdio` as a second process, lofi serve + mpv): a {r['duration_sec']:g} s piece "
                     f"with play: true first heard after {r['link_first_sound_sec']:.1f} s against {r['local_first_sound_sec']:.1f} s with the local engine "
                     f"in the same run ({r['added_first_sound_sec']:+.1f} s); the link carried {r['link_bytes_per_music_sec'] / 1000:.0f} kB per second "
                     f"of music ({r['link_bytes_received'] / 1e6:.1f} MB in, {r['link_bytes_sent'] / 1000:.1f} kB out)")
    if results.get("radio from audio"):
        r = results["radio from audio"]
        lines.append(f"radio from {r['audio_sec']:g} s of your audio, {r['variant']} (lofi serve, mpv): radio_start to first sound "
                     + ", ".join(f"{a:.1f} s" for a in r["from_audio_first_sound_sec"]) + " against "
                     + ", ".join(f"{p:.1f} s" for p in r["prompt_first_sound_sec"]) + " from a prompt in the same run: added "
                     + ", ".join(f"{d:+.1f} s" for d in r["added_first_sound_sec"]) + " (the first includes deriving and loading the encoder)")
    lines.append("")
    if results.get("editor"):
        e = results["editor"]
        idle, busy = e["idle"], e["during_generation"]
        lines.append(f"editor (headless Neovim, {e['variant']}): generate() returned in {e['generate_returned_ms']:.1f} ms; a keystroke's round trip "
                     f"idle median {idle['median_ms']:.1f} / p99 {idle['p99_ms']:.1f} ms, during a {e['duration_sec']:g} s generation median "
                     f"{busy['median_ms']:.1f} / p99 {busy['p99_ms']:.1f} / worst {busy['worst_ms']:.1f} ms ({e['during_over_idle_p99']:.2f}× idle p99)")
        lines.append(f"  :qa! mid-generation: the editor gone in {e['quit_editor_gone_sec']:.2f} s, its {e['processes_at_quit']} processes (host, engine, player) in {e['quit_all_processes_gone_sec']:.2f} s")
        lines.append("")
    for label, *_ in VARIANTS:
        radio = results[f"radio {label}"]
        lines.append(f"radio continue {label} ({radio['window_sec']:g} s windows, {radio['context_sec']:g} s context): RTF first window {radio['first_window_rtf']:.2f}, continuing {radio['continuing_rtf']:.2f}")
    for label, *_ in VARIANTS:
        table = results[f"radio {label}"]["predicted_rtf"]
        lines.append(f"  {label} priced RTF by window/context: " + ", ".join(f"{k} {v:.2f}" for k, v in table.items()))
    lines.append("")
    for label, *_ in VARIANTS:
        p = results[f"profile {label}"]
        top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(p["ms_by_op"].items())[:6])
        lines.append(f"profile {label} at position {p['position']} (step {p['step_ms']:.1f} ms): {top} ms")
    lines.append("")
    for label, get, ok in TARGETS:
        try:
            value = get(results)
        except (KeyError, ValueError, TypeError, ZeroDivisionError):
            value = None
        verdict = "not measured" if value is None else ("MET" if ok(value) else "MISSED")
        lines.append(f"[{verdict:^12}] {label}" + ("" if value is None else f"  ({value:.3g})"))
    return "\n".join(lines)


def in_subprocess(*args: str) -> dict[str, Any]:
    """One measurement in a fresh process: its own peak RSS, nothing warm from the others."""
    done = subprocess.run([sys.executable, "-m", "lofi_engine.dev.bench", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark step {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def floors(results: dict[str, Any]) -> None:
    """Each variant's floor at each position range (its step graph's weights + the cache at the range's middle,
    read once at the measured bandwidth) and its steps over it."""
    results["floor_ms"], results["floor_ratio"] = {}, {}
    for label, *_ in VARIANTS:
        r = results[label]
        results["floor_ms"][label], results["floor_ratio"][label] = {}, {}
        for lo, hi in POSITION_RANGES:
            kv = r["kv_bytes_1450"] / 1450 * ((lo + hi) / 2)
            floor = (r["step_weight_bytes"] + kv) / (results["read_gbps"] * 1e9) * 1000
            results["floor_ms"][label][f"{lo}-{hi}"] = floor
            if r.get(f"step_ms_{lo}_{hi}"):
                results["floor_ratio"][label][f"{lo}-{hi}"] = r[f"step_ms_{lo}_{hi}"] / floor
    results["over_naive"] = {
        label: {d: results[f"{label} naive"][f"wall_{d}s_sec"] / results[label][f"wall_{d}s_sec"] for d in ("10", "30")}
        for label in ("fp32", "int8") if f"{label} naive" in results
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="directory made by `make bench-models`")
    parser.add_argument("--step", choices=["first-load", "measure", "divergence", "radio", "profile", "eta", "editor", "first-sound", "radio-live", "encoder", "radio-from-audio", "link"], help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="small", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["inplace", "published", "naive"], default="inplace", help=argparse.SUPPRESS)
    parser.add_argument("--quantize", choices=["int4"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--report", type=Path, metavar="JSON", help="print the table of an earlier run's JSON again")
    parser.add_argument("--optimized", type=Path, help="where the optimized-model cache goes (default: MODELS/optimized)")
    args = parser.parse_args(argv)
    optimized = args.optimized or args.models / "optimized"
    steps = {
        "first-load": lambda: timed_load(args.model_dir, args.threads, optimized, args.mode, args.quantize)[1] | {"peak_rss_gb": peak_rss_gb()},
        "measure": lambda: measure_ours(args.model_dir, args.threads, (10.0, 30.0), optimized, args.mode, args.quantize),
        "divergence": lambda: measure_divergence(args.model_dir, args.threads, optimized, args.quantize),
        "radio": lambda: measure_radio(args.model_dir, args.threads, optimized, args.quantize),
        "profile": lambda: profile_step(args.model_dir, args.threads, optimized, args.quantize),
        "eta": lambda: measure_eta(args.model_dir, args.threads, optimized),
        "editor": lambda: measure_editor(args.model_dir, "small", args.threads),
        "first-sound": lambda: measure_first_sound(args.model_dir, args.variant, args.threads),
        "radio-live": lambda: measure_radio_live(args.model_dir, args.variant, args.threads),
        "encoder": lambda: measure_encoder(args.threads),
        "radio-from-audio": lambda: measure_radio_from_audio(args.model_dir, args.variant, args.threads),
        "link": lambda: measure_link(args.model_dir, args.variant, args.threads),
    }
    if args.step:
        print(json.dumps(steps[args.step]()))
        return 0
    if args.report:
        results = json.loads(args.report.read_text())
        floors(results)
        print(report(results))
        return 0

    common = ["--models", str(args.models), "--threads", str(args.threads), "--optimized", str(optimized)]
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {sys.version.split()[0]}",
                               "threads": args.threads, "read_gbps": read_bandwidth(args.threads) / 1e9}

    def save() -> None:  # kept after every step: a later failure loses nothing measured
        args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")

    shutil.rmtree(optimized, ignore_errors=True)
    for label, directory, quantize in VARIANTS:
        model_dir, extra = str(args.models / directory), (["--quantize", quantize] if quantize else [])
        results[f"{label} first load"] = in_subprocess("--step", "first-load", "--model-dir", model_dir, *extra, *common)
        results[label] = in_subprocess("--step", "measure", "--model-dir", model_dir, *extra, *common)
        results[label]["step_weight_bytes"] = step_weight_bytes(Path(model_dir), quantize)
        save()
        if quantize is None:
            results[f"{label} naive"] = in_subprocess("--step", "measure", "--model-dir", model_dir, "--mode", "naive", *common)
        results[f"radio {label}"] = in_subprocess("--step", "radio", "--model-dir", model_dir, *extra, *common)
        results[f"profile {label}"] = in_subprocess("--step", "profile", "--model-dir", model_dir, *extra, *common)
        save()
    fp32 = str(args.models / "musicgen-full")
    results["divergence fp32"] = in_subprocess("--step", "divergence", "--model-dir", fp32, *common)
    results["divergence int4"] = in_subprocess("--step", "divergence", "--model-dir", fp32, "--quantize", "int4", *common)
    results["eta"] = in_subprocess("--step", "eta", "--model-dir", fp32, *common)
    results["editor"] = in_subprocess("--step", "editor", "--model-dir", fp32, *common)
    for variant, directory in (("small-int8", "musicgen-full-int8"), ("small", "musicgen-full")):
        results[f"first sound {variant}"] = in_subprocess("--step", "first-sound", "--model-dir", str(args.models / directory), "--variant", variant, *common)
        results[f"radio live {variant}"] = in_subprocess("--step", "radio-live", "--model-dir", str(args.models / directory), "--variant", variant, *common)
    results["encoder"] = in_subprocess("--step", "encoder", *common)
    results["radio from audio"] = in_subprocess(
        "--step", "radio-from-audio", "--model-dir", str(args.models / "musicgen-full-int8"), "--variant", "small-int8", *common
    )
    results["link"] = in_subprocess("--step", "link", "--model-dir", str(args.models / "musicgen-full-int8"), "--variant", "small-int8", *common)
    save()
    if not args.skip_transformers:
        try:
            results["transformers"] = measure_transformers(args.models / "musicgen-full-transformers", args.threads, 10.0)
        except Exception as exc:
            print(f"transformers could not run: {exc!r}", file=sys.stderr)
    # Another process on the machine can only make a pass slower: the best of the passes before and after.
    results["read_gbps"] = max(results["read_gbps"], read_bandwidth(args.threads) / 1e9)
    floors(results)
    text = report(results)
    print(text)
    args.json.write_text(json.dumps({**results, "report": text}, indent=1, default=float) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
