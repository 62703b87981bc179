"""Latency per face of every export variant of the MobileFAN presets.

Usage:
    python benchmarks/bench_latency.py [--presets mobilefan_lite mobilefan]
        [--runs 50] [--threads 1 2] [--json benchmarks/latency.json]
        [--dlib_predictor shape_predictor_68_face_landmarks.dat]

Rows: Keras (tf.function), SavedModel, TFLite float32 / fp16 / int8 at 1 and
2 threads: first call, median and p90 ms per face, artifact size, GMACs
(conv/depthwise/deconv/dense layers of the Keras model) and achieved
GMAC/s; then end-to-end rows (face detection + crop + TFLite landmarks on a
512 x 512 photo) and dlib's 68-point predictor when dlib and its .dat file
are available. Untrained weights: latency does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

from mobilefan_tf.latency import VARIANTS, format_table, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["mobilefan_lite", "mobilefan"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--dlib_predictor")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "latency.json"))
    args = parser.parse_args()
    rows = run_benchmark(args.presets, args.variants, args.threads, args.runs, dlib_predictor=args.dlib_predictor)
    print(format_table(rows))
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    with open(args.json, "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
