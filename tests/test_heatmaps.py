"""Heatmap encoding/decoding: exact centres, sub-pixel round trip, frames."""

import numpy as np
import pytest

from mobilefan_tf.heatmaps import (
    decode_heatmaps,
    decode_to_input,
    encode_heatmaps,
    heatmap_to_input,
    input_to_heatmap,
)


def test_encode_peak_and_value():
    hm = encode_heatmaps(np.array([[[10.0, 20.0]]]), 64, sigma=1.0).numpy()
    assert hm.shape == (1, 64, 64, 1)
    assert hm[0, 20, 10, 0] == pytest.approx(1.0)  # row = y, column = x
    assert hm[0, 20, 11, 0] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert hm[0, 22, 10, 0] == pytest.approx(np.exp(-2.0), rel=1e-6)


def test_encode_nan_gives_empty_map():
    hm = encode_heatmaps(np.array([[np.nan, 3.0], [5.0, 5.0]]), 16).numpy()
    assert hm.shape == (16, 16, 2)
    assert hm[..., 0].max() == 0.0 and hm[..., 1].max() == pytest.approx(1.0)


@pytest.mark.parametrize("size,sigma", [(64, 1.0), (32, 1.0), (64, 2.0)])
def test_round_trip_subpixel(size, sigma):
    rng = np.random.default_rng(0)
    # Keep 2 sigma from the border: a Gaussian cut off by the edge is no longer
    # symmetric, and no decoder can recover its centre exactly.
    margin = 2 * sigma
    lm = rng.uniform(margin, size - 1 - margin, size=(8, 68, 2)).astype(np.float32)
    coords, scores = decode_heatmaps(encode_heatmaps(lm, size, sigma), "dark")
    assert np.abs(coords.numpy() - lm).max() < 0.05
    assert scores.numpy().min() > 0.6


def test_dark_beats_quarter_beats_argmax():
    rng = np.random.default_rng(1)
    lm = rng.uniform(3, 28, size=(4, 68, 2)).astype(np.float32)
    hm = encode_heatmaps(lm, 32, 1.0)
    err = {m: np.abs(decode_heatmaps(hm, m)[0].numpy() - lm).mean() for m in ("argmax", "quarter", "dark")}
    assert err["dark"] < 0.01 < err["quarter"] < err["argmax"]
    assert err["argmax"] == pytest.approx(0.25, abs=0.05)  # uniform rounding error


def test_frames_are_inverse_and_centred():
    xy = np.array([[-0.5, 0.0], [255.5, 127.0]])
    back = heatmap_to_input(input_to_heatmap(xy, 4.0), 4.0)
    np.testing.assert_allclose(back, xy)
    # The input's left edge (-0.5) is the heatmap's left edge (-0.5).
    assert input_to_heatmap(-0.5, 4.0) == pytest.approx(-0.5)


def test_decode_to_input_scales_by_stride():
    lm_in = np.array([[[100.3, 40.7], [13.2, 240.1]]], np.float32)
    hm = encode_heatmaps(input_to_heatmap(lm_in, 4.0), 64, 1.0)
    out, _ = decode_to_input(hm, 256)
    assert np.abs(out.numpy() - lm_in).max() < 0.2  # 0.05 heatmap px * stride 4


def test_border_peaks_without_blur_are_exact():
    # A peak on the first/last pixel is expanded around the nearest interior pixel.
    lm = np.array([[[0.2, 30.0], [63.0, 0.4], [31.5, 62.8]]], np.float32)
    coords, _ = decode_heatmaps(encode_heatmaps(lm, 64, 1.0), "dark", blur_sigma=None)
    assert np.abs(coords.numpy() - lm).max() < 1e-3


def test_bad_inputs():
    with pytest.raises(ValueError, match="decode method"):
        decode_heatmaps(np.zeros((1, 8, 8, 2)), "median")
    with pytest.raises(ValueError, match=r"\[B, H, W, K\]"):
        decode_heatmaps(np.zeros((8, 8, 2)))
