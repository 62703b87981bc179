"""Distiller training mechanics: frozen teacher, BN modes, gradients, saving, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from distillation import Distiller, load_teacher
from mobilefan_tf.heatmaps import encode_heatmaps
from mobilefan_tf.models import build_model
from mobilefan_tf.models.base import LandmarkModelMixin

SIZE = 64


def tiny_student(seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return build_model("mobilefan", input_size=kw.pop("input_size", SIZE), width=0.35, deconv_filters=16, **kw)


def tiny_teacher(seed=1, **kw):
    keras.utils.set_random_seed(seed)
    return build_model("hourglass", input_size=kw.pop("input_size", SIZE), channels=16, depth=3, **kw)


def batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    heatmaps = encode_heatmaps(rng.uniform(2, 13, (n, 68, 2)), SIZE // 4).numpy()
    return images, heatmaps


@pytest.fixture(scope="module")
def distiller():
    d = Distiller(tiny_student(), tiny_teacher())
    d.compile(keras.optimizers.Adam(1e-2), fa_weight=0.01, fs_weight=0.01, kd_weight=1.0, jit_compile=False)
    return d


def student_bn(d):
    return d.student.get_layer("feat1_bn")


def test_teacher_frozen_student_trains(distiller):
    images, heatmaps = batch()
    teacher_before = [w.copy() for w in distiller.teacher.get_weights()]
    student_before = [w.copy() for w in distiller.student.get_weights()]
    logs = distiller.train_on_batch(images, heatmaps, return_dict=True)
    assert set(logs) >= {"loss", "heatmap_loss", "fa_loss", "fs_loss", "kd_loss", "nme"}
    for a, b in zip(teacher_before, distiller.teacher.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(student_before, distiller.student.get_weights(), strict=True))
    teacher_ids = {id(v) for v in distiller.teacher.weights}
    assert not teacher_ids & {id(v) for v in distiller.trainable_variables}


def test_bn_statistics_move_only_in_training(distiller):
    images, heatmaps = batch(seed=1)
    bn = student_bn(distiller)
    before = bn.moving_mean.numpy().copy()
    distiller.test_on_batch(images, heatmaps)
    distiller.student.predict(images, verbose=0)
    distiller(images, training=False)
    np.testing.assert_array_equal(before, bn.moving_mean.numpy())
    distiller.train_on_batch(images, heatmaps)
    assert not np.array_equal(before, bn.moving_mean.numpy())


def test_call_returns_both_models_outputs(distiller):
    images, _ = batch(n=2)
    out = distiller(images, training=False)
    np.testing.assert_allclose(out["student"]["heatmaps"], distiller.student(images, training=False))
    np.testing.assert_allclose(out["teacher"]["heatmaps"], distiller.teacher(images, training=False)[-1])
    assert out["student"]["heatmaps"].shape == (2, SIZE // 4, SIZE // 4, 68)
    assert set(out["student"]) == {"heatmaps", "feat1", "feat2", "feat3"}


def test_gradients_reach_student_and_adaptors_not_teacher(distiller):
    images, heatmaps = batch(seed=2)
    teacher_vars = distiller.teacher.weights
    adaptor_vars = [v for a in distiller.adaptors.values() for v in a.trainable_variables]
    student_vars = distiller.student.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([v.value for v in teacher_vars])
        loss = distiller.compute_losses(images, heatmaps, training=True)["loss"]
    assert all(g is None for g in tape.gradient(loss, teacher_vars))
    for group in (student_vars, adaptor_vars):
        grads = tape.gradient(loss, group)
        assert all(g is not None for g in grads)
        assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


def test_student_saves_alone_and_reloads(distiller, tmp_path):
    images, _ = batch(n=2, seed=3)
    path = str(tmp_path / "student.keras")
    distiller.save(path)  # what ModelCheckpoint calls: the student alone
    loaded = keras.saving.load_model(path)
    assert not any("adaptor" in v.path for v in loaded.weights)
    assert len(loaded.weights) == len(distiller.student.weights)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), distiller.student.predict(images, verbose=0))


def test_backup_weights_round_trip(distiller, tmp_path):
    path = str(tmp_path / "state.weights.h5")
    distiller.save_weights(path)
    other = Distiller(tiny_student(seed=3), tiny_teacher(seed=4))
    other.compile(keras.optimizers.Adam(1e-2), fa_weight=0.01, fs_weight=0.01, kd_weight=1.0, jit_compile=False)
    other.load_weights(path)
    images, _ = batch(n=2)
    np.testing.assert_array_equal(other.student.predict(images, verbose=0),
                                  distiller.student.predict(images, verbose=0))
    for a, b in zip(other.adaptors["feat1"].weights, distiller.adaptors["feat1"].weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ------------------------------------------------------------------ bad input
def test_mismatched_keypoints():
    with pytest.raises(ValueError, match="landmarks"):
        Distiller(tiny_student(num_keypoints=68), tiny_teacher(num_keypoints=98))


def test_mismatched_input_size():
    with pytest.raises(ValueError, match="whole multiple of the student input size"):
        Distiller(tiny_student(input_size=128), tiny_teacher(input_size=192))  # 1.5x


def test_unknown_stage():
    d = Distiller(tiny_student(), tiny_teacher())
    with pytest.raises(ValueError, match="feat9"):
        d.compile("adam", stages=("feat1", "feat9"))


def test_pool_size_must_divide():
    d = Distiller(tiny_student(), tiny_teacher())
    with pytest.raises(ValueError, match="fs_pool_size"):
        d.compile("adam", fs_weight=0.01, fs_pool_size=3)


@keras.saving.register_keras_serializable(package="tests")
class CoarseTeacher(LandmarkModelMixin, keras.Model):
    """A landmark model whose feat3 is at 1/8 of the input instead of 1/4."""

    def __init__(self, **kwargs):
        inputs = keras.Input((SIZE, SIZE, 3))
        f1 = keras.layers.Conv2D(8, 1)(keras.layers.AveragePooling2D(16)(inputs))
        f2 = keras.layers.Conv2D(8, 1)(keras.layers.AveragePooling2D(8)(inputs))
        heat = keras.layers.Conv2D(68, 1)(keras.layers.AveragePooling2D(4)(inputs))
        super().__init__(inputs, heat, **kwargs)
        self.num_keypoints, self.input_size, self.heatmap_size = 68, SIZE, SIZE // 4
        self._feature_tensors = {"feat1": f1, "feat2": f2, "feat3": f2}


def test_stage_resolution_mismatch():
    d = Distiller(tiny_student(), CoarseTeacher())
    with pytest.raises(ValueError, match="feat3"):
        d.compile("adam", fa_weight=0.01)
    d.compile("adam", fa_weight=0.01, stages=("feat1", "feat2"))  # the matching stages are fine


def test_teacher_checkpoint_of_another_model(tmp_path):
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = str(tmp_path / "classifier.keras")
    plain.save(path)
    with pytest.raises(ValueError, match="landmark model"):
        load_teacher(path)
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="Cannot load"):
        load_teacher(str(junk))
    with pytest.raises(FileNotFoundError):
        load_teacher(str(tmp_path / "missing.keras"))
    wide = tiny_teacher(num_keypoints=98)
    wide_path = str(tmp_path / "wflw_teacher.keras")
    wide.save(wide_path)
    with pytest.raises(ValueError, match="98 landmarks"):
        Distiller(tiny_student(), load_teacher(wide_path))


def test_empty_datasets(distiller):
    images, heatmaps = batch(n=2)
    empty = tf.data.Dataset.from_tensor_slices((images, heatmaps)).take(0).batch(2)
    full = tf.data.Dataset.from_tensor_slices((images, heatmaps)).batch(2)
    with pytest.raises(ValueError, match="training dataset is empty"):
        distiller.fit(empty, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="validation dataset is empty"):
        distiller.fit(full, validation_data=empty, epochs=1, verbose=0)
