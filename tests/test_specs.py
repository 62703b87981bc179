"""Landmark specs: flip pairs checked on real 300W faces and against public layouts."""

import glob
import os

import numpy as np
import pytest

from mobilefan_tf.data import read_pts
from mobilefan_tf.specs import COFW, SPECS, W300, WFLW, check_num_points, get_spec


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=list(SPECS))
def test_flip_permutation_is_an_involution(spec):
    perm = spec.flip_permutation
    np.testing.assert_array_equal(perm[perm], np.arange(spec.num_points))
    flat = [i for pair in spec.flip_pairs for i in pair]
    assert len(flat) == len(set(flat)), "an index appears in two flip pairs"
    for a, b in (spec.eye_outer, spec.pupils or spec.eye_outer):
        assert perm[a] == b


@pytest.mark.parametrize(
    "spec,midline",
    [
        # Points on the face's vertical midline: the only ones a flip keeps.
        (W300, {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}),
        (WFLW, {16, 51, 52, 53, 54, 57, 79, 85, 90, 94}),
        (COFW, {20, 21, 24, 25, 26, 27, 28}),
    ],
    ids=["300w", "wflw", "cofw"],
)
def test_fixed_points_are_the_midline(spec, midline):
    fixed = {i for i in range(spec.num_points) if spec.flip_permutation[i] == i}
    assert fixed == midline


def test_lookup_and_errors():
    assert get_spec(68) is W300 and get_spec("WFLW") is WFLW and get_spec(29) is COFW
    with pytest.raises(ValueError, match="No landmark spec has 70 points"):
        get_spec(70)
    with pytest.raises(ValueError, match="Unknown landmark spec"):
        get_spec("aflw")
    with pytest.raises(ValueError, match="does not match spec '300w'"):
        check_num_points(98, "300w")


def _procrustes_error(shape, ref):
    """RMS distance after the best similarity transform (no reflection) of shape onto ref."""
    a = shape - shape.mean(0)
    b = ref - ref.mean(0)
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1, d]) @ vt
    scale = (s * [1, d]).sum() / (a**2).sum()
    return np.sqrt(((scale * a @ rot - b) ** 2).sum(1).mean()) / np.sqrt((b**2).sum(1).mean())


def test_300w_flip_pairs_on_real_faces(w300_dir):
    """A mirrored real face with swapped indices must look like a face again.

    Mirroring x and permuting indices should give a shape as close to the
    mean face (up to rotation/scale/shift) as unflipped faces are; a wrong
    pair makes that shape an outlier, and no permutation at all a mirror image.
    """
    files = sorted(glob.glob(os.path.join(w300_dir, "**", "*.pts"), recursive=True))[::20]
    assert len(files) >= 50
    shapes = [read_pts(f).astype(np.float64) for f in files]
    width = 320
    ref = np.mean([s - s.mean(0) for s in shapes], axis=0)
    perm = W300.flip_permutation
    plain, flipped, unswapped = [], [], []
    for s in shapes:
        mirrored = s.copy()
        mirrored[:, 0] = (width - 1) - mirrored[:, 0]  # pixel-centre mirror of a 320-px crop
        plain.append(_procrustes_error(s, ref))
        flipped.append(_procrustes_error(mirrored[perm], ref))
        unswapped.append(_procrustes_error(mirrored, ref))
    assert np.median(flipped) < 1.1 * np.median(plain)
    assert np.median(unswapped) > 3 * np.median(plain)
    # And per point: the flipped left eye corner lands where the right one was mirrored to.
    s = shapes[0]
    mirrored = s.copy()
    mirrored[:, 0] = (width - 1) - mirrored[:, 0]
    np.testing.assert_allclose(mirrored[perm][36], mirrored[45])
