"""What the in-browser viewer receives: the image and its overlays as NIfTI bytes, and a spec.

Pure functions (arrays in, bytes and a JSON-able dict out), so tests check them
without Streamlit or a browser, and the 2D image path and the volume path
share them: a 2D image is a one-slice volume.

Why NIfTI: NiiVue reads it natively, and it carries what the viewer needs to
be right in millimetres and orientation: the voxel-to-world affine (RAS+, the
NIfTI convention), so the caliper measures in mm and the orientation labels
(L/R, A/P, S/I) are the patient's. Where the orientation is not known (a
projection image such as a mammogram, a file without Image Orientation
(Patient), an array given with spacing only), the spec says so and the viewer
shows no orientation labels rather than invented ones.

Values are sent as they are (Modality LUT output: Hounsfield units for CT), so
window presets and the value under the cursor are in the image's own units;
the window is applied in the browser (no round trip to Python).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from scipy import ndimage

from dashboard.figures.saliency import FLOOR, relative_map
from dashboard.figures.viewer import CONTOUR_COLOUR, CT_PRESETS

# DICOM's patient coordinates are LPS+ (PS3.3 C.7.6.2.1.1); NIfTI's world is RAS+: flip x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
AUTO_WINDOW = "Auto (0.5–99.5 %)"
FILE_WINDOW = "File window"
MAX_VOXELS = 64 * 1024 * 1024  # about 256 MB as float32: beyond this the browser tab struggles
PLANES = ("AXIAL", "CORONAL", "SAGITTAL", "MULTIPLANAR")


class ViewerInputError(ValueError):
    """The array, affine or overlay cannot be shown (shape, size or values); the message says why."""


@dataclass(frozen=True)
class Overlay:
    """One layer over the image, the same shape as the volume (z, y, x).

    ``kind``: "outline" (a mask, drawn as its outline in ``color``) or "heat" (a map whose
    positive part is scaled to its maximum and drawn in ``colormap``, transparent below
    ``threshold`` of the maximum, so the anatomy under weak evidence stays readable).
    """

    name: str
    data: np.ndarray
    kind: str = "outline"
    color: tuple[int, int, int] = (230, 159, 0)
    colormap: str = "inferno"
    opacity: float = 1.0
    visible: bool = True
    threshold: float = FLOOR
    note: str = ""


@dataclass(frozen=True)
class ViewerPayload:
    """What the component is called with: ``spec`` (JSON) and the NIfTI bytes by argument name."""

    spec: dict
    image: bytes
    overlays: dict[str, bytes] = field(default_factory=dict)

    @property
    def n_bytes(self) -> int:
        return len(self.image) + sum(len(b) for b in self.overlays.values())


def hex_colour(colour: str) -> tuple[int, int, int]:
    """``#RRGGBB`` -> (r, g, b)."""
    c = colour.lstrip("#")
    return (int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16))


AI_OUTLINE_RGB = hex_colour(CONTOUR_COLOUR)  # the orange of the page's other figures
TRUTH_OUTLINE_RGB = hex_colour("#56B4E9")  # sky blue: the phantom's ground truth, as elsewhere


def affine_from_spacing(spacing_zyx: Sequence[float]) -> np.ndarray:
    """A diagonal affine for (dz, dy, dx) mm, axes as DICOM's usual axial stack (columns to the
    patient's left, rows to posterior, slices to the head) expressed in RAS+.

    Geometry in mm is right; whether the labels are the patient's is not known from spacing
    alone, so ``payload`` hides the orientation labels unless told otherwise."""
    dz, dy, dx = (float(s) for s in spacing_zyx)
    if min(dz, dy, dx) <= 0 or not np.isfinite([dz, dy, dx]).all():
        raise ViewerInputError(f"spacing must be positive mm, got {tuple(spacing_zyx)}")
    return LPS_TO_RAS @ np.diag([dx, dy, dz, 1.0])


def affine_from_dicom(
    orientation: Sequence[float],
    position: Sequence[float],
    spacing_rc: Sequence[float],
    slice_spacing: float | None = None,
) -> np.ndarray:
    """RAS+ affine of a DICOM image (or stack) from Image Orientation (Patient), Image Position
    (Patient) of the first slice, Pixel Spacing (row, column) and the distance between slices.

    PS3.3 C.7.6.2.1.1: the first three values of the orientation are the direction of the row
    (the direction in which the column index grows), the next three that of the column. The
    slice direction is their cross product (the stack must be sorted along it)."""
    o = np.asarray(orientation, dtype=float)
    if o.shape != (6,) or not np.isfinite(o).all():
        raise ViewerInputError("Image Orientation (Patient) must be six numbers")
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 0.5:
        raise ViewerInputError("Image Orientation (Patient) does not give two orthogonal axes")
    dr, dc = (float(s) for s in spacing_rc)
    ds = float(slice_spacing) if slice_spacing else 1.0
    lps = np.eye(4)
    lps[:3, 0] = row_dir * dc  # x index (column) moves along the row direction
    lps[:3, 1] = col_dir * dr  # y index (row) moves along the column direction
    lps[:3, 2] = normal / np.linalg.norm(normal) * ds
    lps[:3, 3] = np.asarray(position, dtype=float)[:3]
    return LPS_TO_RAS @ lps


def window_presets(
    modality: str,
    values: np.ndarray,
    file_window: tuple[float, float] | None = None,
) -> list[dict]:
    """The viewer's window presets: [{name, center, width}], the first is shown first.

    CT: the file's window, then soft tissue, lung, bone and brain (fixed Hounsfield windows).
    Other modalities (MR, MG, ...): intensities have no fixed scale, so the first is "Auto",
    the 0.5–99.5 percentile range of the image's non-background voxels, then the file's window.
    """
    out: list[dict] = []
    finite = values[np.isfinite(values)]
    auto = None
    if finite.size:
        # a regular subsample: percentiles of 262,144 values are as good and 5x faster on a volume
        sample = finite if finite.size <= 262_144 else finite[:: finite.size // 262_144 + 1]
        body = sample[sample > sample.min()] if np.any(sample > sample.min()) else sample
        lo, hi = np.percentile(body, [0.5, 99.5])
        if hi <= lo:
            lo, hi = float(sample.min()), float(sample.max()) + 1.0
        auto = {"name": AUTO_WINDOW, "center": float((lo + hi) / 2), "width": float(hi - lo)}
    if file_window is not None and file_window[1] > 0:
        fw = {"name": FILE_WINDOW, "center": float(file_window[0]), "width": float(file_window[1])}
    else:
        fw = None
    if modality.upper() == "CT":
        out += [fw] if fw else []
        out += [{"name": n, "center": c, "width": w} for n, (c, w) in CT_PRESETS.items()]
        out += [auto] if auto else []
    else:
        out += [auto] if auto else []
        out += [fw] if fw else []
    if not out:
        out.append({"name": "Full range", "center": 0.5, "width": 1.0})
    return out


def outline_source(mask: np.ndarray) -> np.ndarray:
    """The outline of a (z, y, x) mask as the viewer's label layer (uint8: 1 on the outline).

    Why computed here: NiiVue's label outline keeps the inside filled, which hides the
    lesion's own pixels. A volume's outline is its 3D surface (face neighbours), so every
    plane (axial, coronal, sagittal) cuts it as a ring; a one-slice image's is the 2D
    boundary, drawn ``max(1, side // 256)`` pixels thick so it stays visible on a large image
    shown at screen size."""
    m = np.asarray(mask) > 0
    if m.shape[0] == 1:
        plane = m[0]
        width = max(1, max(plane.shape) // 256)
        inner = ndimage.binary_erosion(
            plane, structure=ndimage.generate_binary_structure(2, 1), iterations=width
        )
        return (plane & ~inner)[np.newaxis].astype(np.uint8)
    inner = ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1))
    return (m & ~inner).astype(np.uint8)


def nifti_bytes(volume_zyx: np.ndarray, affine: np.ndarray, intent: str | None = None) -> bytes:
    """A NIfTI-1 file of a (z, y, x) array: int16 when the values are whole numbers that fit
    (half the bytes of float32, exact), float32 otherwise; for an overlay, uint8 and gzipped.

    ``intent``: "label" (a mask: 0/1 as uint8, NIfTI's label intent) or "fraction" (a map in
    [0, 1], e.g. the saliency map scaled to its maximum: uint8 steps of 1/255 with the scaling
    in the header's scl_slope, so the viewer reads the same [0, 1] values, to within 0.002, in
    a quarter of float32's bytes). Overlays are gzipped (level 1): an outline is mostly zeros,
    1 MB of a 128 x 128 x 64 mask goes as 5 kB for about 2 ms here. The image is not: gzip
    took about 40 ms in Python for 2 MB -> 1 MB, more than a megabyte takes on a local link."""
    data = np.asarray(volume_zyx)
    slope = None
    if intent == "label":
        data = data.astype(np.uint8)
    elif intent == "fraction":
        data = np.round(np.clip(np.nan_to_num(data.astype(np.float32)), 0.0, 1.0) * 255)
        data, slope = data.astype(np.uint8), 1.0 / 255
    elif np.issubdtype(data.dtype, np.integer) or (
        np.all(np.isfinite(data)) and np.array_equal(data, np.round(data))
    ):
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        data = data.astype(np.int16) if -32768 <= lo and hi <= 32767 else data.astype(np.float32)
    else:
        data = np.nan_to_num(data.astype(np.float32))
    img = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    if intent == "label":
        img.header.set_intent("label")
    raw = img.to_bytes()
    # mtime 0: the same layer gives the same bytes, so the payload's id follows the content only
    return gzip.compress(raw, compresslevel=1, mtime=0) if intent else raw


def _as_volume(array: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[np.newaxis]
    if a.ndim != 3 or min(a.shape) < 1:
        raise ViewerInputError(f"{what} must be a 2D image or a (z, y, x) volume, got {a.shape}")
    if a.size > MAX_VOXELS:
        raise ViewerInputError(
            f"{what} has {a.size:,} voxels; the viewer takes at most {MAX_VOXELS:,}"
        )
    if np.issubdtype(a.dtype, np.complexfloating) or a.dtype == object:
        raise ViewerInputError(f"{what} must hold real numbers")
    return a


def payload(
    volume: np.ndarray,
    affine: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    overlays: Sequence[Overlay] = (),
    *,
    modality: str = "",
    units: str = "",
    presets: list[dict] | None = None,
    file_window: tuple[float, float] | None = None,
    orientation_known: bool | None = None,
    spacing_known: bool = True,
    plane: str = "AXIAL",
    start_slice: int | None = None,
    height: int = 560,
) -> ViewerPayload:
    """Everything the viewer needs for one image or volume.

    ``volume``: (z, y, x), or (y, x) for a 2D image. ``affine``: 4x4, voxel (x, y, z) index to
    RAS+ mm (nibabel's convention); or ``spacing`` (dz, dy, dx) mm; neither: 1 mm voxels and no
    mm claims beyond that. ``orientation_known`` defaults to True only with an affine.
    ``spacing_known`` False (a file without pixel spacing): the caliper says pixels, not mm.
    ``start_slice``: the axial slice to open on (e.g. the one with the AI lesion)."""
    vol = _as_volume(volume, "the image")
    if affine is not None:
        aff = np.asarray(affine, dtype=float)
        if (
            aff.shape != (4, 4)
            or not np.isfinite(aff).all()
            or abs(np.linalg.det(aff[:3, :3])) < 1e-9
        ):
            raise ViewerInputError("the affine must be a finite, invertible 4x4 matrix")
    else:
        aff = affine_from_spacing(spacing if spacing is not None else (1.0, 1.0, 1.0))
    known = (affine is not None) if orientation_known is None else orientation_known
    if plane.upper() not in PLANES:
        raise ViewerInputError(f"plane must be one of {', '.join(PLANES)}")
    values = vol.astype(np.float32, copy=False)
    image = nifti_bytes(vol, aff)
    layers: dict[str, bytes] = {}
    specs = []
    for i, o in enumerate(overlays):
        if o.kind not in ("outline", "heat"):
            raise ViewerInputError(f"overlay {o.name!r}: kind must be 'outline' or 'heat'")
        data = _as_volume(o.data, f"overlay {o.name!r}")
        if data.shape != vol.shape:
            raise ViewerInputError(
                f"overlay {o.name!r} has shape {data.shape}, the image {vol.shape}"
            )
        arg = f"overlay_{i}"
        if o.kind == "outline":
            layers[arg] = nifti_bytes(outline_source(data), aff, intent="label")
        else:
            layers[arg] = nifti_bytes(relative_map(data), aff, intent="fraction")
        specs.append(
            {
                "arg": arg,
                "name": o.name,
                "kind": o.kind,
                "color": list(o.color),
                "colormap": o.colormap,
                "opacity": float(np.clip(o.opacity, 0.0, 1.0)),
                "visible": bool(o.visible),
                "threshold": float(o.threshold),
                "note": o.note,
            }
        )
    n_slices = vol.shape[0]
    spec = {
        "is_volume": n_slices > 1,
        "orientation_known": bool(known),
        "spacing_known": bool(spacing_known),
        "modality": modality,
        "units": units,
        "presets": presets or window_presets(modality, values, file_window),
        "preset_index": 0,
        "overlays": specs,
        "plane": plane.upper() if n_slices > 1 else "AXIAL",
        "start_slice": None if start_slice is None else int(np.clip(start_slice, 0, n_slices - 1)),
        "height": int(height),
        "shape_zyx": list(vol.shape),
    }
    digest = hashlib.sha256(image)
    for arg in sorted(layers):
        digest.update(layers[arg])
    digest.update(json.dumps(spec, sort_keys=True).encode())
    spec["id"] = digest.hexdigest()[:16]
    return ViewerPayload(spec=spec, image=image, overlays=layers)


def dicom_affine(header, spacing_rc: Sequence[float] | None) -> tuple[np.ndarray, bool]:
    """(affine, orientation known) of one DICOM frame from its header (a pydicom Dataset).

    With Image Orientation and Position (Patient) and a pixel spacing: the patient's geometry,
    labels shown. Without them (projection images such as mammograms, secondary captures) or
    without a spacing: the pixel grid at its spacing (1 mm when unknown), labels hidden."""
    iop = getattr(header, "ImageOrientationPatient", None)
    ipp = getattr(header, "ImagePositionPatient", None)
    spacing = tuple(float(s) for s in spacing_rc) if spacing_rc else (1.0, 1.0)
    if iop is not None and ipp is not None and spacing_rc:
        try:
            thickness = float(getattr(header, "SliceThickness", 1.0) or 1.0)
            return affine_from_dicom(
                [float(v) for v in iop], [float(v) for v in ipp], spacing, thickness
            ), True
        except (ViewerInputError, TypeError, ValueError):
            pass  # malformed geometry: shown on its pixel grid, without orientation labels
    return affine_from_spacing((1.0, spacing[0], spacing[1])), False
