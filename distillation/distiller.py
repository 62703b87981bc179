"""`Distiller`: trains a MobileFAN student against a frozen teacher.

Loss (per batch) = heatmap MSE(student, ground truth)
                 + fa_weight * sum_stages FAD(adaptor(student_feat), teacher_feat)
                 + fs_weight * sum_stages FSD(student_feat, teacher_feat)

Each term is a metric of its own (``loss``, ``heatmap_loss``, ``fa_loss``,
``fs_loss``, plus ``nme`` of the student's heatmaps), so `fit` prints and the
CSV logger records all of them, with ``val_`` twins from `test_step`.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from mobilefan_tf.metrics import NormalizedMeanError
from mobilefan_tf.models import FEATURE_NAMES

from .losses import feature_aligned_loss, feature_similarity_loss, make_adaptor

LOSS_NAMES = ("loss", "heatmap_loss", "fa_loss", "fs_loss")


def check_landmark_model(model, role: str) -> None:
    """Raises ValueError unless `model` is one of this package's heatmap models."""
    needed = ("feature_extractor", "feature_channels", "num_keypoints", "input_size")
    if not isinstance(model, keras.Model) or not all(hasattr(model, a) for a in needed):
        raise ValueError(
            f"The {role} must be a mobilefan_tf landmark model (built with build_model), got {type(model).__name__}"
        )


def load_teacher(path: str) -> keras.Model:
    """Loads a teacher checkpoint (`.keras`) written by a training run.

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


class Distiller(keras.Model):
    """A student, a frozen teacher and one FAD adaptor per feature stage.

    Args:
        student: The model being trained (e.g. ``build_model("mobilefan")``).
        teacher: A trained landmark model with the same K and input size. It
            is frozen (``trainable = False``) and always run with
            ``training=False``, so neither its weights nor its BatchNorm
            statistics ever change.

    `call` runs the student only: ``distiller(images)`` gives the student's
    heatmaps [B, Hm, Hm, K]. ``distiller.student`` holds no adaptor and is
    what gets deployed; `save` writes it alone (see there).

    Choices that differ from the authors' PyTorch code:
      * Only the student's final heatmaps are supervised (its feature extractor
        returns the last stack), so the student runs once per step.
      * The FSD cosine similarities L2-normalise with a floored norm instead of
        dividing by ``|a||b| + 1e-9`` (finite gradients at dead-ReLU zeros).
      * A loss term whose weight is 0 is not computed at all (logged as 0).

    Under `tf.distribute.MirroredStrategy` each replica computes the losses on
    its share of the batch and the gradients are summed across replicas (the
    loss is divided by the replica count), so the update equals the
    single-device one, except that BatchNorm normalises with per-replica batch
    statistics (as Keras does for any model).
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
        if student.input_size != teacher.input_size:
            raise ValueError(
                f"Teacher input size {teacher.input_size} != student input size {student.input_size}: "
                "both must see the same images (pick a teacher preset matching the student)"
            )
        self.student = student
        self.teacher = teacher
        teacher.trainable = False
        s_ch, t_ch = student.feature_channels, teacher.feature_channels
        self.adaptors = {n: make_adaptor(s_ch[n], t_ch[n], f"adaptor_{n}") for n in FEATURE_NAMES}
        self.built = True

    # ---------------------------------------------------------------- setup
    def compile(
        self,
        optimizer="adam",
        heatmap_loss="mse",
        fa_weight: float = 0.01,
        fs_weight: float = 0.01,
        fs_pool_size: int | None = None,
        stages=FEATURE_NAMES,
        metrics=None,
        fa_normalize: bool = True,
        **kwargs,
    ):
        """Configures the distillation loss and the optimiser.

        Args:
            optimizer: Keras optimiser (or name).
            heatmap_loss: Keras loss (or name) between ground-truth and student heatmaps.
            fa_weight: Weight of the summed FAD terms (the paper's lambda_1).
            fs_weight: Weight of the summed FSD terms (the paper's lambda_2).
            fs_pool_size: Average-pool features by this factor before FSD
                (cuts the N x N matrices' memory by fs_pool_size**4).
            stages: Which of ``feat1``..``feat3`` to distil.
            metrics: Metrics of the student's heatmaps; default the NME.
            fa_normalize: Use the relative FAD (MSE / mean square of the
                teacher feature), which keeps w_fa meaningful whatever the
                teacher's feature scale (see `feature_aligned_loss`). False
                gives the authors' plain MSE.
            **kwargs: Passed to `keras.Model.compile` (e.g. ``jit_compile``).

        Raises:
            ValueError: Unknown stage, a stage whose feature resolution
                differs between teacher and student, a pool size that does
                not divide a stage, or negative weights.
        """
        stages = (stages,) if isinstance(stages, str) else tuple(stages)
        unknown = [s for s in stages if s not in FEATURE_NAMES]
        if unknown or not stages:
            raise ValueError(f"Unknown feature stage(s) {unknown or stages}: choose from {FEATURE_NAMES}")
        s_shapes = {n: tuple(t.shape[1:3]) for n, t in self.student.feature_extractor.output.items()}
        t_shapes = {n: tuple(t.shape[1:3]) for n, t in self.teacher.feature_extractor.output.items()}
        for s in stages:
            if s_shapes[s] != t_shapes[s]:
                raise ValueError(
                    f"Stage {s}: student features are {s_shapes[s]} but teacher features {t_shapes[s]}; "
                    "distilled stages need the same spatial resolution"
                )
            if fs_pool_size and fs_pool_size > 1 and any(d % fs_pool_size for d in s_shapes[s]):
                raise ValueError(f"fs_pool_size {fs_pool_size} does not divide stage {s} of size {s_shapes[s]}")
        if fa_weight < 0 or fs_weight < 0:
            raise ValueError(f"Loss weights must be >= 0, got fa_weight={fa_weight}, fs_weight={fs_weight}")
        super().compile(optimizer=optimizer, **kwargs)
        self.stages = stages
        self.fa_weight = float(fa_weight)
        self.fs_weight = float(fs_weight)
        self.fs_pool_size = fs_pool_size
        self.fa_normalize = bool(fa_normalize)
        self.heatmap_loss_fn = keras.losses.get(heatmap_loss)
        for name, adaptor in self.adaptors.items():
            adaptor.trainable = name in stages and fa_weight > 0
        self.loss_trackers = [keras.metrics.Mean(name=n) for n in LOSS_NAMES]
        spec = getattr(self.student, "spec", None) or self.student.num_keypoints
        self.student_metrics = list(metrics) if metrics is not None else [NormalizedMeanError(spec, name="nme")]
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(getattr(self, "loss_trackers", [])) + list(getattr(self, "student_metrics", []))

    # ------------------------------------------------------------- forward
    def call(self, inputs, training=None):
        """The student's heatmaps, [B, Hm, Hm, K] (``training`` passed through)."""
        return self.student(inputs, training=training)

    def compute_losses(self, images, heatmaps, training: bool = False) -> dict:
        """Every loss term on one batch.

        Args:
            images: [B, S, S, 3] RGB in [0, 255].
            heatmaps: [B, Hm, Hm, K] ground truth.
            training: Student and adaptor mode (the teacher always infers).

        Returns:
            Dict of scalars ``loss``, ``heatmap_loss``, ``fa_loss`` (summed
            over stages, unweighted), ``fs_loss`` (same) and ``pred`` (the
            student heatmaps). A term whose weight is 0 is not computed
            (it would cost the N x N matrices for nothing) and reads 0.
        """
        t_out = self.teacher.feature_extractor(images, training=False)
        s_out = self.student.feature_extractor(images, training=training)
        pred = s_out["heatmaps"]
        hm = tf.reduce_mean(self.heatmap_loss_fn(heatmaps, pred))
        fa, fs = tf.constant(0.0), tf.constant(0.0)
        for s in self.stages:  # a term with weight 0 is skipped (logged as 0)
            t_feat = tf.stop_gradient(t_out[s])
            if self.fa_weight:
                adapted = self.adaptors[s](s_out[s], training=training)
                fa += feature_aligned_loss(adapted, t_feat, normalize=self.fa_normalize)
            if self.fs_weight:
                fs += feature_similarity_loss(s_out[s], t_feat, self.fs_pool_size)
        total = hm + self.fa_weight * fa + self.fs_weight * fs
        return {"loss": total, "heatmap_loss": hm, "fa_loss": fa, "fs_loss": fs, "pred": pred}

    def _update_metrics(self, terms: dict, heatmaps) -> dict:
        batch = tf.shape(heatmaps)[0]
        for tracker in self.loss_trackers:
            tracker.update_state(terms[tracker.name], sample_weight=batch)
        for metric in self.student_metrics:
            metric.update_state(heatmaps, terms["pred"])
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        images, heatmaps, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables  # student + distilled stages' adaptors
        with tf.GradientTape() as tape:
            terms = self.compute_losses(images, heatmaps, training=True)
            # Per-replica mean; replicas' gradients are summed by the optimiser.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(terms["loss"] / replicas)
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return self._update_metrics(terms, heatmaps)

    def test_step(self, data):
        images, heatmaps, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._update_metrics(self.compute_losses(images, heatmaps, training=False), heatmaps)

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        """`keras.Model.fit`, refusing empty datasets before any training starts."""
        if not hasattr(self, "stages"):
            raise ValueError("Call Distiller.compile(...) before fit")
        for what, ds in (("training", x), ("validation", validation_data)):
            if isinstance(ds, tf.data.Dataset) and int(ds.cardinality()) == 0:
                raise ValueError(f"The {what} dataset is empty: no batches to distil on")
        return super().fit(x, y, *args, validation_data=validation_data, **kwargs)

    # --------------------------------------------------------------- saving
    def save(self, filepath, *args, **kwargs):
        """Saves the *student alone* (no teacher, no adaptors) as a full model.

        This is what `keras.callbacks.ModelCheckpoint` calls, so the standard
        ``best.keras`` / ``last.keras`` of a distillation run are ordinary
        student checkpoints that `keras.saving.load_model` restores. The full
        training state (adaptors, optimiser) goes through `save_weights`,
        which `BackupAndRestore` uses.
        """
        self.student.save(filepath, *args, **kwargs)
