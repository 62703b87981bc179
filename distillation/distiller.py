"""`Distiller`: trains a MobileFAN student against a frozen teacher, on any Keras backend.

Loss (per batch), from `distillation.losses.distillation_terms`:

    heatmap MSE(student, ground truth)          (labelled items only)
    + ramp * ( fa_weight * sum_stages FAD(adaptor(student_feat), pool(teacher_feat))
             + fs_weight * sum_stages FSD(student_feat, pool(teacher_feat))
             + kd_weight * MSE(student heatmaps, soft_targets(teacher heatmaps)) )

Why there is no `train_step` here: Keras' own per-backend `train_step`
(TensorFlow, JAX, torch) runs ``self(x)``, then `compute_loss`, then
`compute_metrics`, and differentiates `compute_loss`'s result. `call` runs
both networks and returns their outputs, `compute_loss` turns them into the
terms (updating one tracker per term, which Keras 3 carries through JAX's
stateless step) and `compute_metrics` updates the student's NME. The single
backend-specific detail is TensorFlow's `tf.distribute`: the loss is divided
by the replica count, as Keras' compiled losses do, so the summed gradients
equal the single-device ones (BatchNorm still sees per-replica batches).

Each term is a metric of its own (``loss``, ``heatmap_loss``, ``fa_loss``,
``fs_loss``, ``kd_loss``, plus ``nme``), so `fit` prints them and the CSV
logger records them, with ``val_`` twins.
"""

from __future__ import annotations

import os

import keras
from keras import ops

from mobilefan_tf.metrics import NormalizedMeanError
from mobilefan_tf.models import FEATURE_NAMES

from .losses import distillation_terms, make_adaptor
from .tflite_teacher import TEACHER_HEATMAPS

TERM_NAMES = ("heatmap_loss", "fa_loss", "fs_loss", "kd_loss")


def check_landmark_model(model, role: str) -> None:
    """Raises ValueError unless `model` is one of this package's heatmap models."""
    needed = ("feature_extractor", "feature_channels", "num_keypoints", "input_size")
    if not isinstance(model, keras.Model) or not all(hasattr(model, a) for a in needed):
        raise ValueError(
            f"The {role} must be a mobilefan_tf landmark model (built with build_model), got {type(model).__name__}"
        )


def load_teacher(path: str) -> keras.Model:
    """Loads any landmark model checkpoint (`.keras`) as a teacher: a teacher preset, or a student such as
    the shipped ``mobilefan_300w.keras``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a Keras model, or not a landmark model.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Teacher checkpoint not found: {path}")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"Cannot load a Keras model from teacher checkpoint {path}: {err}") from None
    check_landmark_model(model, f"teacher checkpoint {path}")
    return model


def resolution_factor(student: keras.Model, teacher: keras.Model) -> int:
    """r = teacher input size / student input size, checked to be a whole number >= 1."""
    s, t = int(student.input_size), int(teacher.input_size)
    if t < s or t % s:
        raise ValueError(
            f"Teacher input size {t} is not a whole multiple of the student input size {s}: "
            "the teacher must see the student's face at 1x, 2x, ... its resolution"
        )
    return t // s


def _per_replica(loss):
    """Divides by the tf.distribute replica count (TensorFlow backend only; a no-op elsewhere)."""
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


class Distiller(keras.Model):
    """A student, a frozen teacher and one FAD adaptor per feature stage.

    Args:
        student: The model being trained (e.g. ``build_model("mobilefan_lite")``).
        teacher: A trained landmark model with the same K whose input size is
            r times the student's (r = 1, 2, ...): e.g. the shipped 256 px
            default teaching the 128 px lite student (r = 2). It is frozen
            (``trainable = False``) and always run with ``training=False``.

    Inputs (``x`` of `fit` / `call`): the student's images [B, s, s, 3] when
    r == 1, else a dict ``{"student": [B, s, s, 3], "teacher": [B, r*s, r*s, 3]}``
    holding the *same* augmented face at the two sizes (see
    `mobilefan_tf.data.build_dataset(teacher_input_size=...)`), or, for output
    KD alone, ``{"student": ..., "teacher_heatmaps": [B, r*Hm, r*Hm, K]}``: the
    teacher's heatmaps computed in the input pipeline (`with_teacher_heatmaps`,
    ~2x cheaper on the CPU through TFLite). Targets: the
    student's ground-truth heatmaps [B, s/4, s/4, K]. Sample weights: the
    label weight per item, 1 labelled, 0 unlabelled (no heatmap loss; the
    teacher terms still apply).

    `call` returns ``{"student": {...}, "teacher": {...}}``, both models'
    feature dicts; predict with ``distiller.student``, which holds no adaptor
    and is what gets deployed (`save` writes it alone).

    Choices that differ from the authors' PyTorch code:
      * Only the student's final heatmaps are supervised.
      * FSD cosines L2-normalise with a floored norm (finite gradients at dead ReLUs).
      * A term whose weight is 0 is not computed (logged as 0), and the
        teacher is not run at all when every teacher weight is 0.
      * The teacher terms ramp up linearly over ``ramp_steps`` steps (a step
        counter saved with the training state, so a resumed run continues it).
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, name: str = "distiller", **kwargs):
        super().__init__(name=name, **kwargs)
        check_landmark_model(student, "student")
        check_landmark_model(teacher, "teacher")
        if student.num_keypoints != teacher.num_keypoints:
            raise ValueError(
                f"Teacher predicts {teacher.num_keypoints} landmarks but the student {student.num_keypoints}: "
                "distil between models of the same landmark layout"
            )
        self.factor = resolution_factor(student, teacher)
        self.student = student
        self.teacher = teacher
        teacher.trainable = False
        s_ch, t_ch = student.feature_channels, teacher.feature_channels
        self.adaptors = {n: make_adaptor(s_ch[n], t_ch[n], f"adaptor_{n}") for n in FEATURE_NAMES}
        # Counts training steps for the warm-up ramp; part of the weights, so BackupAndRestore resumes it.
        self.distill_step = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False,
            aggregation="only_first_replica", name="distill_step",
        )
        self.built = True

    # ---------------------------------------------------------------- setup
    def compile(
        self,
        optimizer="adam",
        fa_weight: float = 0.0,
        fs_weight: float = 0.0,
        kd_weight: float = 0.0,
        fs_pool_size: int | None = None,
        stages=FEATURE_NAMES,
        metrics=None,
        fa_normalize: bool = True,
        fs_normalize: bool = False,
        ramp_steps: int = 0,
        sigma: float = 1.0,
        **kwargs,
    ):
        """Configures the distillation loss and the optimiser.

        Args:
            optimizer: Keras optimiser (or name).
            fa_weight: Weight of the summed FAD terms (the paper's lambda_1).
            fs_weight: Weight of the summed FSD terms (the paper's lambda_2).
            kd_weight: Weight of the output-level KD term (teacher heatmaps
                as soft targets), relative to the ground-truth heatmap loss.
            fs_pool_size: Average-pool (student-grid) features by this factor
                before FSD (cuts the N x N matrices' memory by fs_pool_size**4).
            stages: Which of ``feat1``..``feat3`` to distil.
            metrics: Metrics of the student's heatmaps; default the NME.
            fa_normalize: Relative FAD (MSE / mean square of the teacher
                feature), scale-free whatever the teacher. False: plain MSE.
            fs_normalize: Relative FSD (MSE / mean square of the teacher's matrix).
            ramp_steps: Teacher terms grow linearly from 0 to their weight
                over this many training steps (0: full weight at once).
            sigma: Heatmap Gaussian sigma (of the KD soft targets).
            **kwargs: Passed to `keras.Model.compile` (e.g. ``jit_compile``).

        Raises:
            ValueError: Unknown stage, a stage whose teacher resolution is not
                r times the student's, a pool size that does not divide a
                stage, or negative weights.
        """
        stages = (stages,) if isinstance(stages, str) else tuple(stages)
        unknown = [s for s in stages if s not in FEATURE_NAMES]
        if unknown or not stages:
            raise ValueError(f"Unknown feature stage(s) {unknown or stages}: choose from {FEATURE_NAMES}")
        s_shapes = {n: tuple(t.shape[1:3]) for n, t in self.student.feature_extractor.output.items()}
        t_shapes = {n: tuple(t.shape[1:3]) for n, t in self.teacher.feature_extractor.output.items()}
        r = self.factor
        checked = list(stages) if (fa_weight or fs_weight) else []
        for s in checked + (["heatmaps"] if kd_weight else []):
            if tuple(d * r for d in s_shapes[s]) != t_shapes[s]:
                raise ValueError(
                    f"Stage {s}: student maps are {s_shapes[s]} but teacher maps {t_shapes[s]}; distilled stages "
                    f"need the teacher at {r}x the student's resolution (the input size ratio)"
                )
            if s != "heatmaps" and fs_pool_size and fs_pool_size > 1 and any(d % fs_pool_size for d in s_shapes[s]):
                raise ValueError(f"fs_pool_size {fs_pool_size} does not divide stage {s} of size {s_shapes[s]}")
        weights = {"fa_weight": fa_weight, "fs_weight": fs_weight, "kd_weight": kd_weight, "ramp_steps": ramp_steps}
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"Loss weights and ramp_steps must be >= 0, got {weights}")
        super().compile(optimizer=optimizer, **kwargs)
        self.stages = stages
        self.fa_weight, self.fs_weight, self.kd_weight = float(fa_weight), float(fs_weight), float(kd_weight)
        self.fs_pool_size = fs_pool_size
        self.fa_normalize, self.fs_normalize = bool(fa_normalize), bool(fs_normalize)
        self.ramp_steps = int(ramp_steps)
        self.sigma = float(sigma)
        for name, adaptor in self.adaptors.items():
            adaptor.trainable = name in stages and fa_weight > 0
        self.term_trackers = [keras.metrics.Mean(name=n) for n in TERM_NAMES]
        spec = getattr(self.student, "spec", None) or self.student.num_keypoints
        self.student_metrics = list(metrics) if metrics is not None else [NormalizedMeanError(spec, name="nme")]
        self.optimizer.build(self.trainable_variables)

    @property
    def uses_teacher(self) -> bool:
        return bool(self.fa_weight or self.fs_weight or self.kd_weight)

    # ------------------------------------------------------------- forward
    def split_inputs(self, inputs):
        """(student images, teacher images) from `fit`'s ``x`` (see the class docstring); the
        teacher "images" are the teacher's precomputed heatmaps when x carries them."""
        if isinstance(inputs, dict):
            if TEACHER_HEATMAPS in inputs and "student" in inputs:
                return inputs["student"], None
            missing = {"student", "teacher"} - set(inputs)
            if missing:
                raise ValueError(f"Distiller inputs dict needs the keys 'student' and 'teacher', missing {missing}")
            return inputs["student"], inputs["teacher"]
        if isinstance(inputs, (list, tuple)):
            return inputs[0], inputs[1]
        if self.factor != 1:
            raise ValueError(
                f"The teacher sees {self.factor}x the student's resolution: pass x as "
                "{'student': [B, s, s, 3], 'teacher': [B, r*s, r*s, 3]} (build_dataset(teacher_input_size=...))"
            )
        return inputs, inputs

    def call(self, inputs, training=None):
        """Both models' outputs: ``{"student": feature dict, "teacher": feature dict}``.

        The teacher (always inference mode) is skipped when no teacher term
        has a weight. Each feature dict holds ``heatmaps`` and ``feat1..3``.
        """
        s_img, t_img = self.split_inputs(inputs)
        out = {"student": self.student.feature_extractor(s_img, training=training)}
        if t_img is None:  # heatmaps from the input pipeline (`with_teacher_heatmaps`): output KD only
            if getattr(self, "fa_weight", 0.0) or getattr(self, "fs_weight", 0.0):
                raise ValueError(
                    "Precomputed teacher heatmaps (x['teacher_heatmaps']) serve output KD only: FAD and FSD "
                    "need the teacher's features, so pass the teacher images instead (fa_weight / fs_weight > 0)"
                )
            out["teacher"] = {"heatmaps": inputs[TEACHER_HEATMAPS]}
        elif getattr(self, "stages", None) is None or self.uses_teacher:
            out["teacher"] = self.teacher.feature_extractor(t_img, training=False)
        return out

    def _ramp(self):
        if not self.ramp_steps:
            return 1.0
        return ops.minimum(1.0, ops.cast(self.distill_step, "float32") / float(self.ramp_steps))

    def terms(self, outputs: dict, heatmaps, label_weight=None, training: bool = False) -> dict:
        """The loss terms (`distillation_terms`) of `call`'s outputs; ``label_weight`` [B], default all 1."""
        if label_weight is None:
            label_weight = ops.ones((ops.shape(heatmaps)[0],), "float32")
        return distillation_terms(
            outputs["student"], outputs.get("teacher"), heatmaps, label_weight, self.adaptors, self.stages,
            factor=self.factor, fa_weight=self.fa_weight, fs_weight=self.fs_weight, kd_weight=self.kd_weight,
            ramp=self._ramp(), fs_pool_size=self.fs_pool_size, fa_normalize=self.fa_normalize,
            fs_normalize=self.fs_normalize, sigma=self.sigma, training=training,
        )

    def compute_losses(self, x, heatmaps, label_weight=None, training: bool = False) -> dict:
        """Forward pass + every term on one batch (no state changes besides BatchNorm in training).

        Returns the dict of `distillation_terms` plus ``pred``, the student heatmaps.
        """
        outputs = self(x, training=training)
        terms = self.terms(outputs, heatmaps, label_weight, training=training)
        return {**terms, "pred": outputs["student"]["heatmaps"]}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        terms = self.terms(y_pred, y, sample_weight, training=training)
        batch = ops.shape(y)[0]
        for tracker in self.term_trackers:
            tracker.update_state(terms[tracker.name], sample_weight=batch)
        if training:
            self.distill_step.assign_add(1.0)
        return _per_replica(terms["loss"])

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for metric in self.student_metrics:  # labelled items only
            metric.update_state(y, y_pred["student"]["heatmaps"], sample_weight=sample_weight)
        return self.get_metrics_result()

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        """`keras.Model.fit`, refusing empty tf.data datasets before any training starts."""
        if not hasattr(self, "stages"):
            raise ValueError("Call Distiller.compile(...) before fit")
        for what, ds in (("training", x), ("validation", validation_data)):
            cardinality = getattr(ds, "cardinality", None)
            if callable(cardinality) and int(cardinality()) == 0:
                raise ValueError(f"The {what} dataset is empty: no batches to distil on")
        return super().fit(x, y, *args, validation_data=validation_data, **kwargs)

    # --------------------------------------------------------------- saving
    def save(self, filepath, *args, **kwargs):
        """Saves the *student alone* (no teacher, no adaptors) as a full model.

        This is what `keras.callbacks.ModelCheckpoint` calls, so the standard
        ``best.keras`` / ``last.keras`` of a distillation run are ordinary
        student checkpoints that `keras.saving.load_model` restores. The full
        training state (adaptors, step counter, optimiser) goes through
        `save_weights`, which `BackupAndRestore` uses.
        """
        self.student.save(filepath, *args, **kwargs)
