"""Training recipe: config, LR schedule, callbacks and `fit` for heatmap models.

Every run lives in one work directory:

    workdir/log.csv      per-epoch losses and metrics (appended on resume)
    workdir/tb/          TensorBoard logs
    workdir/best.keras   model with the best validation NME so far
    workdir/best.json    that NME and its epoch (a resumed run keeps the best)
    workdir/last.keras   model after the latest epoch
    workdir/backup/      BackupAndRestore state: a killed run resumes here
    workdir/epochs/      epoch_NNN.weights.h5 after every epoch (only with
                         keep_epoch_weights; for weight averaging, see
                         `mobilefan_tf.averaging`)
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras

from mobilefan_tf.metrics import NormalizedMeanError
from mobilefan_tf.schedule import WarmupSchedule  # noqa: F401 - re-exported: saved models name it here
from mobilefan_tf.specs import get_spec


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe.

    The defaults are the from-scratch recipe (no ImageNet weights): Adam with
    a linear warm-up and cosine decay. ``schedule="step"`` gives the authors'
    recipe (x0.1 at `step_epochs`).
    """

    epochs: int = 80
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_epochs: float = 2.0
    schedule: str = "cosine"  # "cosine" | "step" | "constant"
    step_epochs: tuple[int, ...] = (30, 50)
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.0
    sigma: float = 1.0
    seed: int = 0


def lr_schedule(config: TrainConfig, steps_per_epoch: int) -> WarmupSchedule:
    """The per-step learning-rate schedule of `config`."""
    if config.schedule not in ("cosine", "step", "constant"):
        raise ValueError(f"Unknown schedule {config.schedule!r}: use cosine, step or constant")
    return WarmupSchedule(
        peak=config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=int(config.warmup_epochs * steps_per_epoch),
        kind=config.schedule,
        boundaries=[e * steps_per_epoch for e in config.step_epochs],
        min_ratio=config.min_lr_ratio,
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam (AdamW when weight_decay > 0) on the warm-up schedule."""
    lr = lr_schedule(config, steps_per_epoch)
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(lr)


def compile_heatmap_model(model: keras.Model, config: TrainConfig, spec, steps_per_epoch: int) -> keras.Model:
    """Compiles a heatmap model: MSE on every output, NME on the final one.

    A multi-stack model (a list of outputs) gets the same MSE on each stack
    (intermediate supervision) and the NME metric on the last stack only.
    """
    spec = get_spec(spec)
    n_out = len(model.outputs)
    if n_out > 1:
        metrics = [[] for _ in range(n_out - 1)] + [[NormalizedMeanError(spec.name, name="nme")]]
        loss = ["mse"] * n_out
    else:
        metrics = [NormalizedMeanError(spec.name, name="nme")]
        loss = "mse"
    # TensorFlow: XLA (jit_compile) is 4-7x slower on CPU here, so it is off. Other backends
    # (JAX) compile the step with their own jit: without it every op would run eagerly.
    jit = False if keras.backend.backend() == "tensorflow" else "auto"
    model.compile(optimizer=make_optimizer(config, steps_per_epoch), loss=loss, metrics=metrics, jit_compile=jit)
    return model


def repeat_targets(dataset, num_outputs: int):
    """Maps (x, y) to (x, (y,) * n) for a model with n supervised outputs.

    A tf.data dataset gets a map; a `keras.utils.PyDataset` feeder
    (`mobilefan_tf.data.feeder.FaceFeeder`) is told `num_outputs` instead.
    """
    if isinstance(dataset, keras.utils.PyDataset):
        dataset.num_outputs = num_outputs
        return dataset
    if num_outputs == 1:
        return dataset
    return dataset.map(lambda x, y, *rest: (x, tuple([y] * num_outputs)))


def _num_batches(dataset) -> int:
    """Batches per pass: ``len`` of a PyDataset, the cardinality of a tf.data dataset (-1: infinite)."""
    if isinstance(dataset, keras.utils.PyDataset):
        return len(dataset)
    return int(dataset.cardinality())


def tensorboard_available() -> bool:
    """Keras' TensorBoard callback writes through ``tensorflow.summary``: only with TensorFlow installed."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def nme_monitor_name(model: keras.Model) -> str:
    """The name Keras gives the validation NME of `model` in logs."""
    if len(model.outputs) > 1:
        return f"val_{model.output_names[-1]}_nme"
    return "val_nme"


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to each epoch's logs (so log.csv has it)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.model.optimizer is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def resumed_epoch(workdir: str) -> int:
    """Epochs a killed run in `workdir` completed: where `BackupAndRestore` resumes it (0: a fresh run).

    Read from ``workdir/backup/training_metadata.json`` (Keras writes it after
    every epoch and deletes it when the run finishes), so the input stream can
    be skipped to the resumed epoch before `model.fit` starts.
    """
    path = os.path.join(workdir, "backup", "training_metadata.json")
    if not os.path.isfile(path):
        return 0
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: unreadable resume state ({err}); delete {os.path.dirname(path)} to restart") from None


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """Saves the model whenever `monitor` improves (lower is better); the best survives a restart.

    Plain `ModelCheckpoint` starts every `fit` from best = inf, so a resumed run
    overwrote best.keras with its first, possibly worse, epoch. Here each
    improvement is also recorded in a JSON file beside the model
    (``{"monitor", "best", "epoch"}``, replaced atomically after the model is
    written), and a resumed run (`resume` True) starts from that value.
    """

    def __init__(self, filepath: str, monitor: str = "val_nme", resume: bool = False):
        super().__init__(filepath, monitor=monitor, mode="min", save_best_only=True)
        self.record = os.path.splitext(filepath)[0] + ".json"
        if resume and os.path.isfile(self.record):
            with open(self.record) as f:
                saved = json.load(f)
            if saved.get("monitor") == monitor:  # another metric's value would not compare
                self.best = float(saved["best"])

    def on_epoch_end(self, epoch, logs=None):
        before = self.best
        super().on_epoch_end(epoch, logs)
        if self.best != before:
            tmp = self.record + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"monitor": self.monitor, "best": float(self.best), "epoch": epoch + 1}, f)
            os.replace(tmp, self.record)  # a kill leaves the old record or the new one, never half


class EpochWeights(keras.callbacks.Callback):
    """Keeps every epoch's weights as ``DIRECTORY/epoch_NNN.weights.h5`` (1-based), for weight averaging.

    Args:
        directory: Where the files go (created).
        weights_of: The model whose weights are kept; None: the model being
            fitted. A `Distiller` passes its student, so that the files are
            bare student weights, as `experiments.average_weights` expects
            (the Distiller's own weights also hold the adaptors).
    """

    def __init__(self, directory: str, weights_of: keras.Model | None = None):
        super().__init__()
        self.directory, self.weights_of = directory, weights_of

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"epoch_{epoch + 1:03d}.weights.h5")
        tmp = os.path.join(self.directory, f"tmp_epoch_{epoch + 1:03d}.weights.h5")  # not matched by epoch_*
        (self.model if self.weights_of is None else self.weights_of).save_weights(tmp)
        os.replace(tmp, path)  # a kill leaves no half-written epoch file to be averaged


def make_callbacks(
    workdir: str,
    monitor: str = "val_nme",
    tensorboard: bool = True,
    keep_epoch_weights: bool = False,
    weights_of: keras.Model | None = None,
) -> list[keras.callbacks.Callback]:
    """CSV + TensorBoard logs, best and last checkpoints, and backup for resume.

    With `keep_epoch_weights`, every epoch's weights are also kept (1-based
    ``epochs/epoch_NNN.weights.h5``, about 9 MB each for the paper preset) so
    that a run's tail can be averaged afterwards: those of `weights_of` if
    given (a Distiller's student), else of the fitted model.
    """
    os.makedirs(workdir, exist_ok=True)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup")),
        LearningRateLogger(),  # before CSVLogger, which writes the logs it is given
        keras.callbacks.CSVLogger(os.path.join(workdir, "log.csv"), append=True),
        BestCheckpoint(os.path.join(workdir, "best.keras"), monitor=monitor, resume=resumed_epoch(workdir) > 0),
        keras.callbacks.ModelCheckpoint(os.path.join(workdir, "last.keras")),
        keras.callbacks.TerminateOnNaN(),
    ]
    if keep_epoch_weights:
        callbacks.append(EpochWeights(os.path.join(workdir, "epochs"), weights_of))
    if tensorboard and tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(workdir, "tb"), update_freq="epoch"))
    return callbacks


def _patch_multi_worker_mean() -> None:
    """Makes Keras 3 (<= 3.15) average scalar step outputs across workers.

    Its TensorFlow trainer reduces every per-step output (the loss and
    metric values) with ``strategy.reduce("MEAN", v, axis=0)`` under
    `MultiWorkerMirroredStrategy`, which fails for the scalars it gets
    ("Invalid reduction dimension 0 for input with 0 dimensions"). Scalars
    are averaged over replicas (axis=None) instead; everything else is
    left to Keras. Idempotent.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_scalar_mean_fixed", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)

        def mean(v):
            local = strategy.experimental_local_results(v)[0] if tf_trainer._is_per_replica_instance(v) else v
            return strategy.reduce("MEAN", v, axis=0 if local.shape.rank else None)

        return keras.tree.map_structure(mean, values)

    reduce_per_replica._scalar_mean_fixed = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def build_for_strategy(model: keras.Model, dataset) -> None:
    """Builds a model created under a `tf.distribute` strategy from one local batch of `dataset`.

    Keras 3's `fit` builds such a model by taking the first *distributed*
    batch and reducing it across replicas (only to learn shapes), which fails
    under `MultiWorkerMirroredStrategy` ("Attempt to convert a value
    (PerReplica ...)", keras-team/keras#20585). Building here from a local
    batch instead (then turning Keras' step off for this model) gives every
    strategy the same path, so a multi-worker run and a one-process mirrored
    run see the same stream (tests/test_multi_worker.py). A no-op without a
    strategy.
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None:
        return
    import tensorflow as tf  # a strategy exists only on the TensorFlow backend

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _patch_multi_worker_mean()
    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset.take(1))))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def fit(
    model: keras.Model,
    train_ds,
    val_ds,
    config: TrainConfig,
    workdir: str,
    spec="300w",
    steps_per_epoch: int | None = None,
    verbose: int | str = "auto",
    extra_callbacks: list | None = None,
    keep_epoch_weights: bool = False,
) -> keras.callbacks.History:
    """Compiles (if needed) and trains `model`, resumable from `workdir`.

    Args:
        model: A heatmap model (single or multi-stack output).
        train_ds: Batches of (images [B,S,S,3] 0-255, heatmaps [B,Hm,Hm,K]):
            a tf.data dataset (finite, or repeated with `steps_per_epoch`
            given) or a `keras.utils.PyDataset` such as
            `mobilefan_tf.data.feeder.FaceFeeder` (any backend, no TensorFlow).
        val_ds: Same structure, or None.
        config: The recipe.
        workdir: Where logs, checkpoints and the resume backup go.
        spec: Landmark spec (for the NME metric).
        steps_per_epoch: Required when `train_ds` repeats forever.
        verbose: Passed to `model.fit`.
        extra_callbacks: Appended to the standard callbacks.
        keep_epoch_weights: Also keep every epoch's weights in
            ``workdir/epochs/`` (see `make_callbacks`).

    Returns:
        The Keras History of this call (epochs run now; a resumed run only
        reports the epochs it ran).
    """
    if steps_per_epoch is None:
        card = _num_batches(train_ds)
        if card <= 0:
            raise ValueError(
                "train_ds is empty or infinite: pass steps_per_epoch for a repeated dataset"
                if card != 0 else "train_ds is empty: no training batches"
            )
        steps_per_epoch = card
    n_out = len(model.outputs)
    if not getattr(model, "compiled", False):
        compile_heatmap_model(model, config, spec, steps_per_epoch)
    train_ds = repeat_targets(train_ds, n_out)
    if val_ds is not None:
        if _num_batches(val_ds) == 0:
            raise ValueError("val_ds is empty: no validation batches")
        val_ds = repeat_targets(val_ds, n_out)
    monitor = nme_monitor_name(model) if val_ds is not None else "loss"
    callbacks = make_callbacks(workdir, monitor=monitor, keep_epoch_weights=keep_epoch_weights)
    callbacks += list(extra_callbacks or [])
    build_for_strategy(model, train_ds)
    if hasattr(train_ds, "epoch_callback"):  # a FaceFeeder: a resumed run continues its draws
        callbacks.append(train_ds.epoch_callback())
    return model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
