"""DARK decoding cost in TFLite: the windowed blur (today's) beside the whole-map blur (before).

`decode_heatmaps(method="dark")` blurs only the window around each peak (a fixed
[9, (2R+1)^2] weight matrix times a gathered window). Before commit f920e1f it
blurred every whole heatmap (two depthwise convolutions over [H, W, K]), then
transposed and padded the maps to gather each peak's 3x3. This script loads
that former `mobilefan_tf/heatmaps.py` from git (`--before`, so the old code
is run as it was, not re-typed), converts both decoders to float32 TFLite
graphs with heatmaps as the input ([1, H, W, K], batch 1 as the exported
models; noisy Gaussians), and times them side by side at one thread (median /
min ms over `--runs` calls), with the largest difference between their
landmarks.

    python benchmarks/bench_decode.py                  # 64x64x68 (paper) and 32x32x68 (lite) heatmaps
    python benchmarks/bench_decode.py --json results/bench_decode.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from mobilefan_tf.heatmaps import decode_heatmaps, encode_heatmaps  # noqa: E402


def former_decoder(rev: str):
    """`decode_heatmaps` of `mobilefan_tf/heatmaps.py` at git revision `rev` (run from a checkout)."""
    import types

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    source = subprocess.run(["git", "show", f"{rev}:mobilefan_tf/heatmaps.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    module = types.ModuleType(f"heatmaps_at_{rev}")
    exec(compile(source, f"{rev}:mobilefan_tf/heatmaps.py", "exec"), module.__dict__)
    return module.decode_heatmaps


def to_tflite(fn, shape) -> bytes:
    import tensorflow as tf

    module = tf.Module()
    module.decode = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32, name="heatmaps")])
    tmp = tempfile.mkdtemp(prefix="bench_decode_")
    try:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.decode})
        return tf.lite.TFLiteConverter.from_saved_model(tmp).convert()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def noisy_heatmaps(size: int, keypoints: int, rng: np.random.Generator) -> np.ndarray:
    """[1, size, size, keypoints] Gaussians (sigma 1.5) at random interior centres, plus N(0, 0.02) noise."""
    centres = rng.uniform(2, size - 3, (1, keypoints, 2)).astype(np.float32)
    noise = rng.normal(0, 0.02, (1, size, size, keypoints)).astype(np.float32)
    return np.asarray(encode_heatmaps(centres, size, sigma=1.5)) + noise


def timed(flatbuffer: bytes, heatmaps: np.ndarray, runs: int) -> tuple[np.ndarray, float, float]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flatbuffer, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    times = []
    for i in range(runs + 3):
        start = time.perf_counter()
        it.set_tensor(inp, heatmaps)
        it.invoke()
        result = it.get_tensor(out)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return result, 1e3 * float(np.median(times)), 1e3 * float(np.min(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 32], help="heatmap sides (paper 64, lite 32)")
    parser.add_argument("--keypoints", type=int, default=68)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--before", default="f920e1f^", help="git revision of the former decoder")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    former = former_decoder(args.before)
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        shape = (1, size, size, args.keypoints)
        heatmaps = noisy_heatmaps(size, args.keypoints, rng)
        before, before_ms, before_min = timed(to_tflite(lambda h: former(h, method="dark", blur_sigma=1.0)[0], shape), heatmaps, args.runs)
        now, now_ms, now_min = timed(to_tflite(lambda h: decode_heatmaps(h, method="dark", blur_sigma=1.0, blur_radius=3)[0], shape), heatmaps, args.runs)
        rows.append({
            "heatmaps": list(shape), "before": args.before, "whole_map_ms": before_ms, "whole_map_min_ms": before_min,
            "window_ms": now_ms, "window_min_ms": now_min, "speedup_median": before_ms / now_ms,
            "max_abs_diff_px": float(np.abs(before - now).max()),
        })  # fmt: skip
    print("| heatmaps | whole-map blur ms (min) | window blur ms (min) | x faster (median) | max diff (heatmap px) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['heatmaps'][1:]} | {r['whole_map_ms']:.3f} ({r['whole_map_min_ms']:.3f}) | "
              f"{r['window_ms']:.3f} ({r['window_min_ms']:.3f}) | {r['speedup_median']:.2f} | {r['max_abs_diff_px']:.1e} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": 1, "runs": args.runs, "load_avg": os.getloadavg(), "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
