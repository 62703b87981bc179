"""Input-pipeline throughput (images/s) on this machine's CPU cores.

    python benchmarks/bench_pipeline.py [--data_dir ../shared/data/300w] [--seconds 8]

Measures `build_dataset` at 256 and 128 px, with and without the default
augmentation, on the real 300W faces when present (decoded from JPEG inside
the pipeline) else on synthetic faces. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(ds, seconds: float, warmup_batches: int = 3) -> float:
    it = iter(ds)
    for _ in range(warmup_batches):
        next(it)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += int(next(it)[0].shape[0])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_dir = os.environ.get("MOBILEFAN_300W_DIR") or str(REPO.parent / "shared/data/300w")
    parser.add_argument("--data_dir", default=default_dir)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()

    from mobilefan_tf.data import AugmentConfig, build_dataset, read_300w, synthetic_faces

    if os.path.isdir(args.data_dir):
        source, samples = f"300W ({args.data_dir})", read_300w(args.data_dir)
        inputs = dict(images=samples)
    else:
        source = "synthetic (300W not found)"
        images, landmarks = synthetic_faces(256, 320, seed=0)
        inputs = dict(images=images, landmarks=landmarks)
    rows = []
    for size in (256, 128):
        for name, augment in (("none", None), ("default", AugmentConfig())):
            ds = build_dataset(**inputs, input_size=size, augment=augment, batch_size=args.batch_size,
                               seed=0, repeat=True)
            rows.append(dict(input_size=size, augment=name, images_per_s=round(measure(ds, args.seconds), 1)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"Pipeline throughput, {source}, batch {args.batch_size}, {cores} CPU cores")
    print(f"{'input':>6} {'augment':>8} {'images/s':>9}")
    for r in rows:
        print(f"{r['input_size']:>6} {r['augment']:>8} {r['images_per_s']:>9.1f}")
    print(json.dumps(dict(source=source, cores=cores, batch_size=args.batch_size, results=rows)))


if __name__ == "__main__":
    main()
