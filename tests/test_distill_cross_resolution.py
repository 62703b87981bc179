"""Cross-resolution distillation, output KD and unlabelled faces, against NumPy and hand computations."""

import keras
import numpy as np
import pytest

from distillation import Distiller
from distillation.losses import (
    distillation_terms,
    feature_aligned_loss,
    feature_similarity_loss,
    match_resolution,
    soft_heatmap_targets,
)
from mobilefan_tf.data import AugmentConfig, FaceSample, build_dataset, face_box, synthetic_faces
from mobilefan_tf.heatmaps import encode_heatmaps
from mobilefan_tf.models import build_model

S = 64  # student input; teacher 128 (r = 2)


def tiny(size, seed):
    keras.utils.set_random_seed(seed)
    return build_model("mobilefan", input_size=size, width=0.35, deconv_filters=16)


def np_pool(x, r):
    b, h, w, c = x.shape
    return np.asarray(x, np.float64).reshape(b, h // r, r, w // r, r, c).mean(axis=(2, 4))


def np_cosine(feat):
    flat = feat.reshape(feat.shape[0], -1, feat.shape[-1])
    unit = flat / np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True), 1e-6)
    return unit @ unit.transpose(0, 2, 1)


def test_match_resolution_is_block_mean():
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(match_resolution(x, 2), np_pool(x, 2), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(match_resolution(x, 1), x)


def test_cross_resolution_fad_fsd_match_numpy():
    """FAD/FSD of a 2x teacher = the losses against the teacher's 2x2 block means (NumPy reference)."""
    rng = np.random.default_rng(1)
    student = {"heatmaps": rng.uniform(size=(2, 4, 4, 5)), "feat3": rng.normal(size=(2, 4, 4, 3))}
    teacher = {"heatmaps": rng.uniform(size=(2, 8, 8, 5)), "feat3": rng.normal(size=(2, 8, 8, 6))}
    student = {k: v.astype("float32") for k, v in student.items()}
    teacher = {k: v.astype("float32") for k, v in teacher.items()}
    adaptor = keras.layers.Conv2D(6, 1, use_bias=False)
    adaptor.build((None, None, None, 3))
    kernel = adaptor.get_weights()[0][0, 0]  # [3, 6]
    gt = np.zeros((2, 4, 4, 5), "float32")
    terms = distillation_terms(student, teacher, gt, np.ones(2), {"feat3": adaptor}, ("feat3",), factor=2,
                               fa_weight=1.0, fs_weight=1.0, fa_normalize=False)
    pooled = np_pool(teacher["feat3"], 2)
    fad = np.mean((student["feat3"].astype(np.float64) @ kernel - pooled) ** 2)
    fsd = np.mean((np_cosine(student["feat3"].astype(np.float64)) - np_cosine(pooled)) ** 2)
    np.testing.assert_allclose(float(terms["fa_loss"]), fad, rtol=1e-5)
    np.testing.assert_allclose(float(terms["fs_loss"]), fsd, rtol=1e-5)
    # Same-resolution functions agree with the pooled reference too.
    np.testing.assert_allclose(float(feature_similarity_loss(student["feat3"], pooled.astype("float32"))), fsd,
                               rtol=1e-5)
    np.testing.assert_allclose(float(feature_aligned_loss(student["feat3"] @ kernel, pooled)), fad, rtol=1e-5)
    np.testing.assert_allclose(float(terms["loss"]), float(terms["heatmap_loss"]) + fad + fsd, rtol=1e-5)


def test_soft_targets_of_an_ideal_teacher_are_the_student_ground_truth():
    """Gaussians of sigma 1 on the 2x grid -> Gaussians of sigma 1 on the student grid (peak 1)."""
    pts = np.array([[[5.3, 7.8], [10.0, 3.2], [8.6, 8.1]]], np.float32)  # student heatmap pixels, 16 x 16
    student_gt = encode_heatmaps(pts, 16, 1.0).numpy()
    teacher_maps = encode_heatmaps(2 * pts + 0.5, 32, 1.0).numpy()  # pixel-centre map x_t = 2 x_s + 0.5
    soft = np.asarray(soft_heatmap_targets(teacher_maps, 2, 1.0))
    assert soft.shape == student_gt.shape
    assert np.abs(soft - student_gt).max() < 0.03  # the r x r box is not exactly Gaussian
    # Peaks land on the same student pixel and keep their height.
    for k in range(3):
        assert np.argmax(soft[0, ..., k]) == np.argmax(student_gt[0, ..., k])
    np.testing.assert_allclose(soft.max(axis=(1, 2)), student_gt.max(axis=(1, 2)), atol=0.03)
    # Linear in the teacher's output; the identity at r = 1.
    np.testing.assert_allclose(np.asarray(soft_heatmap_targets(0.5 * teacher_maps, 2)), 0.5 * soft, rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_array_equal(np.asarray(soft_heatmap_targets(student_gt, 1)), student_gt)


def test_output_kd_loss_by_hand():
    """KD = mean over every item of (student - soft target)^2; heatmap loss over labelled items only."""
    student = {"heatmaps": np.zeros((2, 2, 2, 1), "float32")}
    student["heatmaps"][0, 0, 0, 0] = 2.0
    teacher = {"heatmaps": np.full((2, 2, 2, 1), 0.5, "float32")}
    gt = np.zeros((2, 2, 2, 1), "float32")
    gt[1] = 2.0  # item 1 is unlabelled: its ground truth must not count
    terms = distillation_terms(student, teacher, gt, np.array([1.0, 0.0]), {}, (), factor=1, kd_weight=3.0)
    # item 0: squares (2.25, .25, .25, .25) -> mean 0.75; item 1: all 0.25 -> KD = (0.75 + 0.25) / 2
    np.testing.assert_allclose(float(terms["kd_loss"]), 0.5, rtol=1e-6)
    # heatmap: item 0 only: (4 + 0 + 0 + 0) / 4
    np.testing.assert_allclose(float(terms["heatmap_loss"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(terms["loss"]), 1.0 + 3 * 0.5, rtol=1e-6)
    half = distillation_terms(student, teacher, gt, np.array([1.0, 0.0]), {}, (), factor=1, kd_weight=3.0, ramp=0.5)
    np.testing.assert_allclose(float(half["loss"]), 1.0 + 1.5 * 0.5, rtol=1e-6)


def test_unlabelled_items_get_teacher_targets_but_no_landmark_loss():
    teacher = tiny(2 * S, 1)
    teacher.get_layer("heatmaps").bias.assign(np.full(68, 0.3, "float32"))  # untrained heads output 0
    d = Distiller(tiny(S, 0), teacher)
    d.compile(keras.optimizers.Adam(1e-3), kd_weight=1.0, fa_weight=0.1, fs_weight=0.1, jit_compile=False)
    rng = np.random.default_rng(2)
    x = {"student": rng.uniform(0, 255, (4, S, S, 3)).astype("float32"),
         "teacher": rng.uniform(0, 255, (4, 2 * S, 2 * S, 3)).astype("float32")}
    hm = encode_heatmaps(rng.uniform(2, 13, (4, 68, 2)), S // 4).numpy()
    weight = np.array([1, 1, 0, 0], "float32")
    base = d.compute_losses(x, hm, weight)
    scrambled = hm.copy()
    scrambled[2:] = rng.uniform(size=scrambled[2:].shape)  # the unlabelled items' maps are ignored
    again = d.compute_losses(x, scrambled, weight)
    for k in ("heatmap_loss", "kd_loss", "fa_loss", "fs_loss"):
        np.testing.assert_allclose(float(again[k]), float(base[k]), rtol=1e-6)
    assert float(base["kd_loss"]) > 0 and float(base["fa_loss"]) > 0 and float(base["fs_loss"]) > 0
    labelled = d.compute_losses({k: v[:2] for k, v in x.items()}, hm[:2])
    np.testing.assert_allclose(float(base["heatmap_loss"]), float(labelled["heatmap_loss"]), rtol=1e-5)
    # An all-unlabelled batch: no landmark loss at all, teacher terms still there.
    none = d.compute_losses(x, hm, np.zeros(4, "float32"))
    assert float(none["heatmap_loss"]) == 0.0 and float(none["kd_loss"]) > 0


def test_pipeline_one_warp_two_sizes_and_label_weights():
    images, landmarks = synthetic_faces(6, image_size=96, seed=3)
    faces = [FaceSample(f"f{i}", None, im, lm) for i, (im, lm) in enumerate(zip(images, landmarks, strict=True))]
    faces.append(FaceSample("u", None, images[0], None, box=face_box(landmarks[0])))
    common = {"augment": AugmentConfig(), "input_size": S, "seed": 5, "shuffle": False}
    plain = next(iter(build_dataset(faces[:6], batch_size=6, with_landmarks=True, **common)))
    dual = next(iter(build_dataset(faces, batch_size=7, teacher_input_size=2 * S, with_landmarks=True,
                                   with_label_weight=True, allow_unlabeled=True, **common)))
    (x, hm, lm, w) = dual
    # The student's half is what training without a teacher sees (up to float32 rounding: the
    # graph with the teacher's warp is optimised differently; pixels are 0..255).
    np.testing.assert_allclose(x["student"].numpy()[:6], plain[0].numpy(), atol=1e-3)
    np.testing.assert_allclose(hm.numpy()[:6], plain[1].numpy(), atol=1e-6)
    np.testing.assert_array_equal(w.numpy(), [1, 1, 1, 1, 1, 1, 0])
    assert not hm.numpy()[6].any() and np.isnan(lm.numpy()[6]).all()
    # Same warp: the teacher image's 2x2 block means are the student image (up to resampling).
    big = x["teacher"].numpy()
    assert big.shape == (7, 2 * S, 2 * S, 3)
    diff = np.abs(np_pool(big, 2) - x["student"].numpy()).mean()
    assert diff < 0.05 * x["student"].numpy().mean()
    other = np.abs(np_pool(big, 2)[::-1] - x["student"].numpy()).mean()
    assert diff < 0.3 * other  # a different face (or warp) is far off


def test_pipeline_rejects_unlabelled_without_box_and_bad_ratio():
    images, landmarks = synthetic_faces(2, image_size=96, seed=4)
    no_box = [FaceSample("a", None, images[0], landmarks[0]), FaceSample("u", None, images[1], None)]
    with pytest.raises(ValueError, match="needs a box"):
        build_dataset(no_box, input_size=S, allow_unlabeled=True)
    with pytest.raises(ValueError, match="no landmarks"):
        build_dataset(no_box, input_size=S)
    with pytest.raises(ValueError, match="whole multiple"):
        build_dataset(no_box[:1], input_size=S, teacher_input_size=96)


def test_teacher_must_be_a_whole_multiple_and_stages_must_scale():
    with pytest.raises(ValueError, match="whole multiple"):
        Distiller(tiny(S, 0), build_model("mobilefan", input_size=96, width=0.35, deconv_filters=16))
    with pytest.raises(ValueError, match="whole multiple"):  # a teacher smaller than its student
        Distiller(tiny(2 * S, 0), tiny(S, 1))
    d = Distiller(tiny(S, 0), tiny(2 * S, 1))
    assert d.factor == 2
    with pytest.raises(ValueError, match="teacher sees 2x"):
        d(np.zeros((1, S, S, 3), "float32"))


def test_ramp_counts_steps_and_resumes_with_the_weights(tmp_path):
    d = Distiller(tiny(S, 0), tiny(S, 1))
    d.compile(keras.optimizers.Adam(1e-3), kd_weight=1.0, ramp_steps=4, jit_compile=False)
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 255, (2, S, S, 3)).astype("float32")
    hm = encode_heatmaps(rng.uniform(2, 13, (2, 68, 2)), S // 4).numpy()
    assert float(d._ramp()) == 0.0
    for _ in range(2):
        d.train_on_batch(x, hm)
    assert float(d.distill_step.numpy()) == 2.0 and float(d._ramp()) == 0.5
    terms = d.compute_losses(x, hm)
    np.testing.assert_allclose(float(terms["loss"]), float(terms["heatmap_loss"]) + 0.5 * float(terms["kd_loss"]),
                               rtol=1e-5)
    path = str(tmp_path / "state.weights.h5")
    d.save_weights(path)  # what BackupAndRestore keeps
    other = Distiller(tiny(S, 2), tiny(S, 3))
    other.compile(keras.optimizers.Adam(1e-3), kd_weight=1.0, ramp_steps=4, jit_compile=False)
    other.load_weights(path)
    assert float(other.distill_step.numpy()) == 2.0
