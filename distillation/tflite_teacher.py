"""A frozen teacher's heatmaps computed by TFLite in the input pipeline (output KD on the CPU).

An output-KD step on the CPU spends much of its time in the teacher's
forward pass. TFLite (XNNPACK) runs that pass ~2x faster than Keras
(``benchmarks/bench_teacher_tflite.py``), and in the input pipeline it also
overlaps with the student's step. So `with_teacher_heatmaps` replaces each
batch's teacher image by the teacher's heatmaps:

    {"student": [B, S, S, 3], "teacher": [B, T, T, 3]}
        -> {"student": [B, S, S, 3], "teacher_heatmaps": [B, Hm_t, Hm_t, K]}

and the `Distiller` uses those heatmaps instead of running its Keras teacher.
Only output KD can use it: FAD and FSD need the teacher's decoder features
(the `Distiller` refuses precomputed heatmaps when their weights are > 0).
The heatmaps agree with the Keras teacher's to float32 rounding (tested).
"""

from __future__ import annotations

import threading

import keras
import numpy as np

from mobilefan_tf.export import heatmap_flatbuffer

TEACHER_HEATMAPS = "teacher_heatmaps"


class TFLiteTeacher:
    """A landmark model's final heatmaps run by a float32 TFLite interpreter at a fixed batch.

    Args:
        teacher: The (trained) landmark model.
        batch_size: B of the interpreter; smaller batches are zero-padded to it.
        num_threads: Interpreter threads (None: TFLite's default).

    Calling it on float32 images [b, T, T, 3] (b <= B, RGB 0..255, the
    teacher's input) returns float32 heatmaps [b, Hm, Hm, K]. Calls are
    serialised by a lock: Keras may prefetch training batches while it
    validates, and an interpreter runs one call at a time.
    """

    def __init__(self, teacher: keras.Model, batch_size: int, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.input_size = int(teacher.input_size)
        self.interpreter = Interpreter(model_content=heatmap_flatbuffer(teacher, self.batch_size),
                                       num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        out = self.interpreter.get_output_details()[0]
        self._output = out["index"]
        self.heatmap_shape = tuple(int(d) for d in out["shape"][1:])  # (Hm, Hm, K)
        self._lock = threading.Lock()

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images, np.float32)
        want = (self.input_size, self.input_size, 3)
        if images.ndim != 4 or images.shape[1:] != want or not 1 <= images.shape[0] <= self.batch_size:
            raise ValueError(
                f"TFLiteTeacher takes [b <= {self.batch_size}, {want[0]}, {want[1]}, 3] images, got {images.shape}"
            )
        b = images.shape[0]
        if b < self.batch_size:  # the last partial batch of an epoch
            images = np.concatenate([images, np.zeros((self.batch_size - b, *want), np.float32)])
        with self._lock:
            self.interpreter.set_tensor(self._input, images)
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self._output)[:b]


def _check_dual(x) -> None:
    if not isinstance(x, dict) or "teacher" not in x:
        raise ValueError(
            "with_teacher_heatmaps needs batches whose x is {'student': ..., 'teacher': ...} "
            "(build_dataset / FaceFeeder with teacher_input_size)"
        )


def _replace_teacher_image(x: dict, heatmaps) -> dict:
    return {**{k: v for k, v in x.items() if k != "teacher"}, TEACHER_HEATMAPS: heatmaps}


class _FeederWithTeacher(keras.utils.PyDataset):
    """A `FaceFeeder` (any backend) whose batches carry the teacher's heatmaps."""

    def __init__(self, feeder, teacher: TFLiteTeacher):
        super().__init__()
        self.feeder, self.teacher = feeder, teacher

    def __len__(self):
        return len(self.feeder)

    def __getitem__(self, index):
        x, *rest = self.feeder[index]
        _check_dual(x)
        return (_replace_teacher_image(x, self.teacher(x["teacher"])), *rest)

    def on_epoch_end(self):
        self.feeder.on_epoch_end()


def with_teacher_heatmaps(dataset, teacher: TFLiteTeacher):
    """The same batches with the teacher image replaced by the teacher's heatmaps.

    Args:
        dataset: A `tf.data.Dataset` from `build_dataset(teacher_input_size=...)`
            or a `FaceFeeder` built with ``teacher_input_size``: batches
            ``({"student", "teacher"}, heatmaps[, label_weight])``.
        teacher: The `TFLiteTeacher` (its input size must be the batches' T).

    Returns:
        The same kind of dataset, x = ``{"student": [B, S, S, 3],
        "teacher_heatmaps": [B, Hm_t, Hm_t, K]}``; everything else unchanged.
    """
    if isinstance(dataset, keras.utils.PyDataset):
        return _FeederWithTeacher(dataset, teacher)
    import tensorflow as tf

    _check_dual(dataset.element_spec[0])

    def run(x, *rest):
        heatmaps = tf.numpy_function(teacher, [x["teacher"]], tf.float32)
        heatmaps.set_shape([x["teacher"].shape[0], *teacher.heatmap_shape])
        return (_replace_teacher_image(x, heatmaps), *rest)

    # Sequential map (the interpreter is one), then let the student's step overlap it.
    return dataset.map(run, num_parallel_calls=None).prefetch(tf.data.AUTOTUNE)
