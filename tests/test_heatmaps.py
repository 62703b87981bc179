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
    with pytest.raises(ValueError, match="blur_radius must be"):
        decode_heatmaps(np.zeros((1, 8, 8, 2)), blur_radius=0)


def _reference_decode(maps, method, sigma, radius=None):
    """NumPy DARK / quarter on whole maps: zero-padded separable blur of every pixel (a Gaussian cut at
    `radius`, default 2 sigma), then the peak's 3x3 neighbourhood (edge values outside), the Newton step on its log."""
    b, h, w, k = maps.shape
    src = maps.astype(np.float64)
    if method == "dark" and sigma:
        radius = int(np.ceil(2 * sigma)) if radius is None else radius
        g = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
        g /= g.sum()
        pad = np.pad(src, [(0, 0), (radius, radius), (radius, radius), (0, 0)])
        src = sum(g[i] * pad[:, :, i : i + w + 0] for i in range(2 * radius + 1))[:, radius:-radius]
        pad = np.pad(src, [(0, 0), (radius, radius), (0, 0), (0, 0)])
        src = sum(g[i] * pad[:, i : i + h] for i in range(2 * radius + 1))
    out = np.zeros((b, k, 2))
    for i in range(b):
        for j in range(k):
            y, x = np.unravel_index(np.argmax(maps[i, :, :, j]), (h, w))
            near = src[i, :, :, j]
            if method == "quarter":

                def m(dx, dy, near=near, x=x, y=y):
                    return near[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)]

                out[i, j] = x + 0.25 * np.sign(m(1, 0) - m(-1, 0)), y + 0.25 * np.sign(m(0, 1) - m(0, -1))
                continue
            x, y = min(max(x, 1), w - 2), min(max(y, 1), h - 2)

            def lg(dx, dy, near=near, x=x, y=y):
                return np.log(max(near[y + dy, x + dx], 1e-10))

            gx, gy = 0.5 * (lg(1, 0) - lg(-1, 0)), 0.5 * (lg(0, 1) - lg(0, -1))
            hxx, hyy = lg(1, 0) - 2 * lg(0, 0) + lg(-1, 0), lg(0, 1) - 2 * lg(0, 0) + lg(0, -1)
            hxy = 0.25 * (lg(1, 1) - lg(1, -1) - lg(-1, 1) + lg(-1, -1))
            det = hxx * hyy - hxy * hxy
            off = np.zeros(2)
            if det > 1e-6 and hxx < 0:
                off = np.clip([-(hyy * gx - hxy * gy) / det, -(hxx * gy - hxy * gx) / det], -1.5, 1.5)
            out[i, j] = x + off[0], y + off[1]
    return out


@pytest.mark.parametrize(
    "method,sigma,radius",
    [("dark", 1.0, None), ("dark", 1.0, 3), ("dark", 2.0, None), ("dark", None, None), ("quarter", None, None)],
)
def test_decode_matches_whole_map_reference(method, sigma, radius):
    # DARK blurs only the window around each peak; it must equal blurring the whole map, border
    # peaks (zeros beyond the edge) and noisy, non-Gaussian maps included.
    rng = np.random.default_rng(3)
    lm = rng.uniform(-1.0, 24.0, size=(3, 17, 2)).astype(np.float32)
    lm[0, :4] = [[0.0, 5.0], [23.0, 23.0], [11.0, 0.3], [0.1, 0.2]]  # on the border
    maps = np.asarray(encode_heatmaps(lm, 24, 1.5)) + rng.uniform(0, 0.4, (3, 24, 24, 17)).astype(np.float32)
    got, scores = decode_heatmaps(maps, method, blur_sigma=sigma, blur_radius=radius)
    np.testing.assert_allclose(np.asarray(got), _reference_decode(maps, method, sigma, radius), atol=2e-4)
    np.testing.assert_allclose(np.asarray(scores), maps.max(axis=(1, 2)), rtol=1e-6)


def test_default_blur_is_sigma_1_5_cut_at_radius_3():
    # The default decoder (MODEL_CARD.md, "Heatmap decoding") reads the same 9x9 window around each peak as the
    # former sigma-1.0 one (cut at 3 sigma), so exported graphs cost the same; its values are the reference's.
    rng = np.random.default_rng(4)
    lm = rng.uniform(2.0, 29.0, size=(2, 9, 2)).astype(np.float32)
    maps = np.asarray(encode_heatmaps(lm, 32, 1.0)) + rng.uniform(0, 0.3, (2, 32, 32, 9)).astype(np.float32)
    got, _ = decode_heatmaps(maps)
    np.testing.assert_allclose(np.asarray(got), _reference_decode(maps, "dark", 1.5, 3), atol=2e-4)
    assert not np.allclose(np.asarray(got), _reference_decode(maps, "dark", 1.0, 3), atol=2e-3)
    from mobilefan_tf.heatmaps import _window_weights

    assert _window_weights(1.5)[1].shape == _window_weights(1.0, 3)[1].shape == (9, 81)
