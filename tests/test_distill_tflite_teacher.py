"""The teacher run by TFLite in the input pipeline: same heatmaps, same loss and gradients as the Keras teacher."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from distillation import Distiller, TFLiteTeacher, with_teacher_heatmaps
from mobilefan_tf.data import FaceSample, build_dataset, synthetic_faces
from mobilefan_tf.data.feeder import FaceFeeder
from mobilefan_tf.models import build_model

S, B = 64, 4  # student input (teacher 128, r = 2), batch


def tiny(size, seed):
    keras.utils.set_random_seed(seed)
    return build_model("mobilefan", input_size=size, width=0.35, deconv_filters=16)


def trained_like_teacher():
    """A tiny teacher whose heatmaps vary with the face: He-normal kernels (the model's own
    initialisers are so small that an untrained model's maps are ~1e-19 everywhere)."""
    teacher = tiny(2 * S, 1)
    rng = np.random.default_rng(1)
    for v in teacher.weights:
        if v.path.endswith("kernel"):
            shape = tuple(v.shape)
            fan_in = shape[-1] if "deconv" in v.path else np.prod(shape[:2] if "depthwise" in v.path else shape[:-1])
            scale = 0.1 if "heatmaps" in v.path else 1.0  # heatmaps of ~0.3 std
            v.assign(rng.normal(0, scale * np.sqrt(2 / fan_in), shape).astype("float32"))
    return teacher


@pytest.fixture(scope="module")
def teacher_and_runner():
    teacher = trained_like_teacher()
    return teacher, TFLiteTeacher(teacher, batch_size=B, num_threads=1)


def faces(n, seed):
    images, landmarks = synthetic_faces(n, image_size=96, seed=seed)
    return [FaceSample(f"f{i}", None, im, lm) for i, (im, lm) in enumerate(zip(images, landmarks, strict=True))]


def test_tflite_heatmaps_equal_the_keras_teachers_also_for_a_partial_batch(teacher_and_runner):
    teacher, runner = teacher_and_runner
    assert runner.heatmap_shape == (S // 2, S // 2, 68)
    images = np.random.default_rng(0).uniform(0, 255, (B - 1, 2 * S, 2 * S, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(teacher.feature_extractor(images, training=False)["heatmaps"])
    got = runner(images)
    assert got.shape == want.shape and np.ptp(want) > 0.1
    np.testing.assert_allclose(got, want, atol=1e-5 * np.ptp(want))
    with pytest.raises(ValueError, match=r"b <= 4, 128, 128"):
        runner(np.zeros((B + 1, 2 * S, 2 * S, 3), "float32"))
    with pytest.raises(ValueError, match=r"b <= 4, 128, 128"):
        runner(np.zeros((1, S, S, 3), "float32"))
    with pytest.raises(ValueError, match=r"got \(\)"):  # not even a batch
        runner(0.0)


def test_distiller_with_pipeline_heatmaps_has_the_keras_teachers_loss_and_gradients(teacher_and_runner):
    teacher, runner = teacher_and_runner
    ds = build_dataset(faces(B, 3), input_size=S, batch_size=B, shuffle=False, teacher_input_size=2 * S,
                       with_label_weight=True)
    (x, hm, w), (xt, hm_t, w_t) = next(iter(ds)), next(iter(with_teacher_heatmaps(ds, runner)))
    assert set(xt) == {"student", "teacher_heatmaps"} and xt["teacher_heatmaps"].shape == (B, S // 2, S // 2, 68)
    np.testing.assert_array_equal(xt["student"].numpy(), x["student"].numpy())
    np.testing.assert_array_equal(hm_t.numpy(), hm.numpy())
    np.testing.assert_array_equal(w_t.numpy(), w.numpy())
    d = Distiller(tiny(S, 0), teacher)
    d.compile(keras.optimizers.Adam(1e-3), kd_weight=1.0, jit_compile=False)

    def loss_and_grads(inputs):
        with tf.GradientTape() as tape:
            terms = d.compute_losses(inputs, hm, w, training=False)
        return terms, tape.gradient(terms["loss"], d.student.trainable_variables)

    ref, ref_grads = loss_and_grads(x)
    got, got_grads = loss_and_grads(xt)
    assert float(ref["kd_loss"]) > 0
    np.testing.assert_allclose(float(got["kd_loss"]), float(ref["kd_loss"]), rtol=1e-4)
    np.testing.assert_allclose(float(got["loss"]), float(ref["loss"]), rtol=1e-4)
    flat = lambda grads: np.concatenate([np.ravel(g) for g in grads])  # noqa: E731
    np.testing.assert_allclose(flat(got_grads), flat(ref_grads), atol=1e-4 * np.abs(flat(ref_grads)).max())
    # The targets matter: twice the teacher's heatmaps give another KD loss (the parity above can fail).
    doubled = {**xt, "teacher_heatmaps": 2 * xt["teacher_heatmaps"]}
    assert abs(float(d.compute_losses(doubled, hm, w)["kd_loss"]) - float(ref["kd_loss"])) > 0.1 * float(
        ref["kd_loss"])


def test_pipeline_heatmaps_serve_output_kd_only(teacher_and_runner):
    teacher, runner = teacher_and_runner
    d = Distiller(tiny(S, 0), teacher)
    d.compile(keras.optimizers.Adam(1e-3), kd_weight=1.0, fa_weight=0.1, jit_compile=False)
    x = {"student": np.zeros((1, S, S, 3), "float32"), "teacher_heatmaps": np.zeros((1, S // 2, S // 2, 68), "float32")}
    with pytest.raises(ValueError, match="output KD only"):
        d(x)
    plain = build_dataset(faces(2, 4), input_size=S, batch_size=2, shuffle=False)
    with pytest.raises(ValueError, match="teacher_input_size"):
        with_teacher_heatmaps(plain, runner)
    with pytest.raises(ValueError, match="teacher_input_size"):
        with_teacher_heatmaps(FaceFeeder(faces(2, 4), input_size=S, batch_size=2), runner)[0]


def test_fit_trains_the_student_on_pipeline_heatmaps_with_both_input_pipelines(teacher_and_runner):
    teacher, runner = teacher_and_runner
    common = {"input_size": S, "batch_size": B, "teacher_input_size": 2 * S, "with_label_weight": True}
    tf_data = with_teacher_heatmaps(build_dataset(faces(2 * B + 1, 5), shuffle=False, **common), runner)
    feeder = FaceFeeder(faces(2 * B + 1, 5), shuffle=False, **common)
    wrapped = with_teacher_heatmaps(feeder, runner)
    assert len(wrapped) == len(feeder) == 3
    (x, hm, w), (xf, hmf, wf) = feeder[2], wrapped[2]  # the last, partial batch (1 face)
    np.testing.assert_allclose(xf["teacher_heatmaps"], runner(x["teacher"]), rtol=0, atol=0)
    np.testing.assert_array_equal(xf["student"], x["student"])
    np.testing.assert_array_equal(hmf, hm)
    np.testing.assert_array_equal(wf, w)
    assert xf["teacher_heatmaps"].shape == (1, S // 2, S // 2, 68) and "teacher" not in xf
    for ds in (tf_data, wrapped):
        d = Distiller(tiny(S, 0), teacher)
        d.compile(keras.optimizers.Adam(1e-3), kd_weight=1.0, jit_compile=False)
        history = d.fit(ds, epochs=2, verbose=0).history
        assert np.all(np.isfinite(history["loss"])) and min(history["kd_loss"]) > 0
        assert history["loss"][-1] < history["loss"][0]
