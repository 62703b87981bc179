"""The learning-rate schedule, in `keras.ops` (the same per-step values on every backend)."""

from __future__ import annotations

import math

import keras


@keras.saving.register_keras_serializable(package="mobilefan_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then cosine / step / constant decay (per step).

    ``lr(step) = peak * min(1, (step + 1) / warmup) * decay(step)``, with the
    cosine going from 1 at the end of the warm-up to `min_ratio` at
    `total_steps`, and the step decay x0.1 at each of `boundaries` (steps).
    """

    def __init__(self, peak, total_steps, warmup_steps, kind="cosine", boundaries=(), min_ratio=0.01):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.boundaries = tuple(int(b) for b in boundaries)
        self.min_ratio = float(min_ratio)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        warm = float(max(self.warmup_steps, 1))
        if self.kind == "cosine":
            span = float(max(self.total_steps - self.warmup_steps, 1))
            t = ops.clip((step - warm) / span, 0.0, 1.0)
            decayed = self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + ops.cos(math.pi * t))
        elif self.kind == "step":
            decayed = ops.ones_like(step)
            for b in self.boundaries:
                decayed = ops.where(step >= b, decayed * 0.1, decayed)
        else:
            decayed = ops.ones_like(step)
        ramp = ops.minimum(1.0, (step + 1.0) / warm) if self.warmup_steps > 0 else 1.0
        return self.peak * ramp * decayed

    def get_config(self):
        return {
            "peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
            "kind": self.kind, "boundaries": self.boundaries, "min_ratio": self.min_ratio,
        }
