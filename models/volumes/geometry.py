"""Where each slice of a series lies in the patient, and whether the slices make one regular stack.

Why by hand and not ``highdicom.get_volume_from_series``: highdicom answers "regular or not"; a
reader of a clinical series needs to know *what* is wrong and where (two images at the same
position, three slices missing between 40 and 55 mm, a tilted gantry), to say so to a user and to
decide whether the stack may still be shown. The arithmetic is a few lines of NumPy; highdicom is
the independent reference the tests compare the affine with.

Conventions (PS3.3 C.7.6.2.1.1, Image Plane module):

- ``ImageOrientationPatient`` holds two unit vectors in the patient's LPS frame (x towards the
  patient's Left, y Posterior, z Superior): the direction along a row (increasing column index)
  and the direction down a column (increasing row index). Their cross product is the slice normal.
- ``ImagePositionPatient`` is the centre of the first transmitted pixel (row 0, column 0). A
  slice's place in the stack is that position projected on the normal; the spacing between
  slices is measured from those projections, never read from ``SliceThickness`` (the thickness
  of the slab a slice integrates, which overlapping or gapped reconstructions make different
  from the spacing) nor trusted from ``SpacingBetweenSlices``.
- ``PixelSpacing`` is (row spacing, column spacing): the distance between rows first.

An array is indexed ``[slice, row, column]`` with slices in increasing order along the normal.
``affine_lps`` maps ``(slice, row, column, 1)`` to LPS millimetres; ``affine_ras`` is the same
map into RAS (x Right, y Anterior: NIfTI's and nibabel's frame), i.e. ``diag(-1, -1, 1, 1) @
affine_lps``. ``nifti_layout`` reorders an array to NIfTI's ``[column, row, slice]`` (the order
dcm2niix writes) with the matching RAS affine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "LPS_TO_RAS",
    "Gap",
    "StackGeometry",
    "affine_lps",
    "axis_codes",
    "nifti_layout",
    "slice_normal",
    "stack_geometry",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""Flips x and y: DICOM's patient frame (LPS) to NIfTI's (RAS)."""

ORTHOGONALITY_TOLERANCE = 1e-3
"""|row . column| and | |v| - 1 | above this: the orientation is not two orthonormal vectors."""

SPACING_TOLERANCE = 0.05
"""Relative: a step between slices within 5 % of the spacing is regular; dcm2niix and highdicom
use tolerances of this order (positions are often written to 0.01-0.1 mm)."""

MIN_TOLERANCE_MM = 0.01
"""Absolute floor of the tolerances, for very thin slices."""

SHEAR_TOLERANCE_MM = 0.1
"""Largest in-plane drift of ImagePositionPatient across the stack (a gantry tilt shears it)."""


@dataclass(frozen=True)
class Gap:
    """Missing slices between two acquired ones: ``after`` and ``after + 1`` in stack order."""

    after: int  # index (stack order) of the slice before the gap
    missing: int  # how many slices fit in it at the series' spacing
    from_mm: float  # position along the normal of the slice before the gap
    to_mm: float  # and of the slice after it

    def describe(self) -> str:
        return (
            f"{self.missing} slice{'s' if self.missing > 1 else ''} missing between "
            f"{self.from_mm:.1f} mm and {self.to_mm:.1f} mm along the slice normal "
            f"(after slice {self.after + 1})"
        )


@dataclass(frozen=True)
class StackGeometry:
    """How a set of parallel slices stack up.

    ``order`` sorts the inputs along the normal; ``duplicates`` are pairs of input indices at
    the same position; ``gaps`` are holes of a whole number of slices; ``irregular`` describes
    steps that are neither the spacing nor a multiple of it (None when all steps are regular);
    ``shear_mm`` is the largest in-plane drift of the positions (non-zero for a tilted gantry).
    """

    normal: np.ndarray  # (3,) unit vector, LPS
    order: np.ndarray  # input indices in increasing position along the normal
    positions_mm: np.ndarray  # projections on the normal, in ``order``
    spacing_mm: float  # the regular step between slices (median of the non-duplicate steps)
    duplicates: tuple[tuple[int, int], ...]
    gaps: tuple[Gap, ...]
    irregular: str | None
    shear_mm: float


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """The unit normal of a slice from its six ``ImageOrientationPatient`` values (row x column).

    Raises ``ValueError`` when the two vectors are not orthonormal within
    ``ORTHOGONALITY_TOLERANCE`` (a damaged header; such an image cannot be placed).
    """
    o = np.asarray(orientation, dtype=float).reshape(2, 3)
    row, col = o[0], o[1]
    if (
        abs(np.linalg.norm(row) - 1) > ORTHOGONALITY_TOLERANCE
        or abs(np.linalg.norm(col) - 1) > ORTHOGONALITY_TOLERANCE
        or abs(float(row @ col)) > ORTHOGONALITY_TOLERANCE
    ):
        raise ValueError(
            "the image orientation (ImageOrientationPatient) is not two perpendicular unit vectors"
        )
    n = np.cross(row, col)
    return np.asarray(n / np.linalg.norm(n))


def stack_geometry(positions: np.ndarray, normal: np.ndarray) -> StackGeometry:
    """Sort ``positions`` (N x 3, LPS mm) along ``normal`` and find duplicates, gaps and shear.

    Needs at least two positions. The spacing is the median step between distinct positions, so
    one gap or a few duplicates never set it; a step of k times the spacing (k >= 2, within
    ``SPACING_TOLERANCE``) is a gap of k - 1 slices; anything else is irregular.
    """
    p = np.asarray(positions, dtype=float).reshape(-1, 3)
    if len(p) < 2:
        raise ValueError("a stack needs at least two slices")
    d = p @ normal
    order = np.argsort(d, kind="stable")
    ds = d[order]
    steps = np.diff(ds)
    scale = max(float(np.ptp(ds)), 1.0)
    same = steps <= max(MIN_TOLERANCE_MM, 1e-6 * scale)
    distinct = steps[~same]
    if distinct.size == 0:  # every slice at one position
        pairs = tuple((int(order[i]), int(order[i + 1])) for i in range(len(steps)))
        return StackGeometry(normal, order, ds, 0.0, pairs, (), None, _shear(p, d, normal))
    spacing = float(np.median(distinct))
    tol = max(MIN_TOLERANCE_MM, SPACING_TOLERANCE * spacing)
    same = steps <= tol  # duplicates judged against the spacing now known
    duplicates = tuple((int(order[i]), int(order[i + 1])) for i in np.flatnonzero(same))
    gaps, odd = [], []
    for i, step in enumerate(steps):
        if same[i] or abs(step - spacing) <= tol:
            continue
        k = round(step / spacing)
        if k >= 2 and abs(step - k * spacing) <= tol * k:
            gaps.append(Gap(i, k - 1, float(ds[i]), float(ds[i + 1])))
        else:
            odd.append(f"{step:.2f} mm after slice {i + 1}")
    irregular = (
        None
        if not odd
        else f"the slice spacing is irregular: {spacing:.2f} mm mostly, but "
        + ", ".join(odd[:3])
        + (f" and {len(odd) - 3} more" if len(odd) > 3 else "")
    )
    return StackGeometry(
        normal, order, ds, spacing, duplicates, tuple(gaps), irregular, _shear(p, d, normal)
    )


def _shear(p: np.ndarray, d: np.ndarray, normal: np.ndarray) -> float:
    """Largest in-plane distance between the slices' origins once projected off the normal."""
    inplane = p - d[:, None] * normal[None, :]
    return float(np.max(np.linalg.norm(inplane - inplane[0], axis=1)))


def affine_lps(
    first_position: np.ndarray,
    orientation: np.ndarray,
    pixel_spacing: tuple[float, float],
    slice_step: np.ndarray,
) -> np.ndarray:
    """The 4 x 4 map from ``(slice, row, column, 1)`` to LPS mm.

    ``slice_step`` is the vector from one slice's origin to the next (normal x spacing for a
    regular stack). Column 1 (rows) is the column direction times the row spacing, column 2
    (columns) the row direction times the column spacing (PS3.3 C.7.6.2.1.1, equation C.7.6.2.1-1).
    """
    o = np.asarray(orientation, dtype=float).reshape(2, 3)
    a = np.eye(4)
    a[:3, 0] = slice_step
    a[:3, 1] = o[1] * float(pixel_spacing[0])
    a[:3, 2] = o[0] * float(pixel_spacing[1])
    a[:3, 3] = np.asarray(first_position, dtype=float)
    return a


def nifti_layout(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[slice, row, column]`` + LPS affine -> ``[column, row, slice]`` + RAS affine (NIfTI's)."""
    perm = np.eye(4)[:, [2, 1, 0, 3]]  # (c, r, s) -> (s, r, c)
    return np.transpose(array, (2, 1, 0)), LPS_TO_RAS @ affine @ perm


def axis_codes(affine: np.ndarray) -> str:
    """The patient direction each array axis points to, in LPS letters (e.g. 'SPL' for axial).

    Three letters for ``[slice, row, column]``: where an increasing index goes. An oblique axis
    gets the letter of its largest component (what a viewer's orientation label shows).
    """
    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    out = []
    for k in range(3):
        v = affine[:3, k]
        j = int(np.argmax(np.abs(v)))
        out.append(letters[j][int(v[j] > 0)])
    return "".join(out)
