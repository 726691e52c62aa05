"""A small synthetic brain MR volume with one metastasis: the viewer's demo volume.

Why here: the in-browser viewer needs a volume to scroll through before series
assembly and the demo volumes on real anatomy (issue 21, items 1-2) land; this
one is drawn from ellipsoids (scalp, skull, cerebrospinal fluid, grey and white
matter, lateral ventricles) with a ring-enhancing lesion (enhancing rim,
necrotic core, oedema), seeded, in a known orientation, with its true mask. It
is a picture for the viewer, not training data, and says so wherever shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# DICOM patient axes (LPS+) to NIfTI's RAS+: flip x and y (PS3.3 C.7.6.2.1.1).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class PhantomVolume:
    """``volume`` (z, y, x) in arbitrary MR units; ``lesion`` the true mask (rim + core);
    ``affine``: voxel (x, y, z) to RAS+ mm, as an axial stack (columns to the patient's
    left, rows to posterior, slices to the head); ``lesion_slice``: the lesion's middle slice."""

    volume: np.ndarray
    lesion: np.ndarray
    affine: np.ndarray
    spacing_zyx: tuple[float, float, float]
    lesion_slice: int


def _ellipsoid(shape: tuple[int, int, int], centre, radii) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    cz, cy, cx = centre
    rz, ry, rx = radii
    return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2


def brain_phantom(
    shape: tuple[int, int, int] = (64, 128, 128),
    spacing_zyx: tuple[float, float, float] = (2.5, 1.6, 1.6),
    seed: int = 0,
) -> PhantomVolume:
    """The demo volume at ``shape`` (z, y, x) voxels of ``spacing_zyx`` mm, seeded."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    c = (nz * 0.5, ny * 0.5, nx * 0.5)
    head = _ellipsoid(shape, c, (nz * 0.46, ny * 0.45, nx * 0.37))
    vol = np.zeros(shape, dtype=np.float32)
    vol[head <= 1.0] = 320.0  # scalp and fat
    vol[head <= 0.88] = 60.0  # skull: dark on T1
    vol[head <= 0.78] = 160.0  # cerebrospinal fluid
    brain = head <= 0.72
    vol[brain] = 520.0  # grey matter
    white = _ellipsoid(shape, c, (nz * 0.30, ny * 0.32, nx * 0.25)) <= 1.0
    vol[white] = 660.0
    for side in (-1, 1):  # lateral ventricles
        v = _ellipsoid(
            shape,
            (c[0] + nz * 0.05, c[1], c[2] + side * nx * 0.06),
            (nz * 0.12, ny * 0.16, nx * 0.035),
        )
        vol[v <= 1.0] = 150.0
    # a ring-enhancing metastasis in the right frontal lobe (the patient's right: image x < centre)
    lc = (nz * 0.62, ny * 0.36, nx * 0.36)
    r = _ellipsoid(
        shape, lc, (4.0 / spacing_zyx[0] * 2.5, 9.0 / spacing_zyx[1], 9.0 / spacing_zyx[2])
    )
    oedema = (r <= 2.6) & brain
    vol[oedema] = np.minimum(vol[oedema], 430.0)
    lesion = r <= 1.0
    vol[lesion] = 940.0  # enhancing rim
    vol[r <= 0.45] = 210.0  # necrotic core
    vol = ndimage.gaussian_filter(vol, sigma=0.7)
    vol += rng.normal(0.0, 14.0, size=shape).astype(np.float32)
    vol = np.clip(vol, 0.0, None).round().astype(np.float32)
    dz, dy, dx = spacing_zyx
    affine = _LPS_TO_RAS @ np.array(
        [
            [dx, 0, 0, -(nx - 1) * dx / 2],
            [0, dy, 0, -(ny - 1) * dy / 2],
            [0, 0, dz, -(nz - 1) * dz / 2],
            [0, 0, 0, 1],
        ]
    )
    return PhantomVolume(
        volume=vol,
        lesion=lesion,
        affine=affine,
        spacing_zyx=spacing_zyx,
        lesion_slice=int(round(lc[0])),
    )
