"""3D reads of DICOM series for the store and the PACS: which files form a volume, its read, and the
lesions in patient coordinates and on the source series' own voxel grid.

Why here, in ``models``: ``analytics.imaging.ingest`` may call ``models`` through public functions
only, and the store needs more of a 3D read than ``oncolens predict`` prints: where each lesion
lies in the patient (its centroid in LPS millimetres, the frame in which lesions of two time
points are compared, ``analytics.imaging.volumes``), which weights read it, and the mask on the
images the radiologist has (the SEG of ``models.volumes.results`` must outline the source slices,
not the model's 2 mm grid).

- ``volume_files`` (from ``series``, re-exported): the series among some files that are volumes
  (3 or more parallel positioned images of one size, docs/volumes.md):
  those are read once in 3D, never slice by slice by a 2D model.
- ``read_series``: assemble each such series and read it with the 3D model of its modality
  (``models.volumes.segment.read_volume``); a series that cannot be assembled or that no model
  reads is a ``SeriesRead`` with its ``error`` and does not stop the others.
- ``lesion_labels_on_source``: the lesions of a read (1..n, largest first, as ``read.lesions``)
  resampled to the source grid by nearest neighbour through the two affines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from models.volumes import geometry
from models.volumes.series import Volume, read_volumes, volume_files

if TYPE_CHECKING:
    # types only: the 3D read's module imports PyTorch, which an ingest of 2D images never needs
    from models.volumes.segment import LesionMeasure, VolumeRead

__all__ = [
    "SeriesRead",
    "lesion_centres_lps",
    "lesion_labels_on_source",
    "read_series",
    "volume_files",
]


@dataclass(frozen=True)
class SeriesRead:
    """One series' 3D read (or why there is none): what ingest stores and the PACS receives."""

    series_instance_uid: str
    files: tuple[str, ...]
    volume: Volume | None = None
    read: VolumeRead | None = None
    weights_sha256: str | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def centres_lps_mm(self) -> tuple[tuple[float, float, float], ...]:
        return () if self.read is None else lesion_centres_lps(self.read)


def read_series(series: dict[str, list[Path]], model: str | None = None) -> list[SeriesRead]:
    """The 3D read of each series (``volume_files``' answer); failures are entries, not raises."""
    # lazy: MONAI and torch load only where a volume is read
    from models.volumes import bundle as bundles
    from models.volumes.segment import NoModelForVolumeError, read_volume  # lazy: as above

    out = []
    for uid, paths in series.items():
        files = tuple(str(p) for p in paths)
        result = read_volumes(paths)
        if result.failures or not result.volumes:
            failure = result.failures[0] if result.failures else None
            out.append(
                SeriesRead(
                    uid,
                    files,
                    error=failure.error if failure else "no volume could be assembled",
                    error_type=failure.error_type if failure else "VolumeError",
                )
            )
            continue
        volume = result.volumes[0]
        try:
            bundle = bundles.bundle_for(volume.modality, model)
            read = read_volume(volume, bundle)
        except (NoModelForVolumeError, bundles.BundleError) as exc:
            out.append(
                SeriesRead(uid, files, volume, error=str(exc), error_type=type(exc).__name__)
            )
            continue
        out.append(SeriesRead(uid, files, volume, read, bundle.sha256))
    return out


def lesion_centres_lps(read: VolumeRead) -> tuple[tuple[float, float, float], ...]:
    """Each lesion's centre (``LesionMeasure.centre_voxel`` on the model grid) in LPS mm."""
    if read.mask_affine_ras is None:
        return ()
    to_lps = geometry.LPS_TO_RAS @ np.asarray(read.mask_affine_ras, float)  # RAS -> LPS: same flip
    out = []
    for lesion in read.lesions:
        p = to_lps @ np.array([*lesion.centre_voxel, 1.0])
        out.append((round(float(p[0]), 2), round(float(p[1]), 2), round(float(p[2]), 2)))
    return tuple(out)


def _model_labels(mask: np.ndarray, lesions: Sequence[LesionMeasure]) -> np.ndarray:
    """The kept mask's components numbered as ``lesions`` (1 = largest), matched by their centre
    voxel, computed exactly as ``segment.measure`` computes it."""
    comp, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    labels = np.zeros(mask.shape, np.uint8)
    number = {m.centre_voxel: k for k, m in enumerate(lesions, start=1)}
    for k, box in enumerate(ndimage.find_objects(comp), start=1):
        if box is None:
            continue
        part = comp[box] == k
        centre = tuple(
            int(s.start + c) for s, c in zip(box, ndimage.center_of_mass(part), strict=True)
        )
        if centre in number:
            labels[box][part] = number[centre]
    return labels


def lesion_labels_on_source(read: VolumeRead, volume: Volume) -> np.ndarray:
    """Lesion numbers (uint8, 0 = none) on ``volume``'s grid ``[slice, row, column]``.

    Nearest neighbour through source index -> LPS -> RAS -> model index: each source voxel takes
    the label of the model voxel it falls in, so a lesion is never outlined where the model did
    not outline it. Raises ``ValueError`` for a refused read (it has no mask).
    """
    if read.mask is None or read.mask_affine_ras is None:
        raise ValueError("a refused read has no mask to outline")
    labels = _model_labels(read.mask, read.lesions)
    source_ras = geometry.LPS_TO_RAS @ np.asarray(volume.affine_lps, float)
    return model_grid_to_source(labels, read.mask_affine_ras, source_ras, volume.shape, order=0)


def model_grid_to_source(
    values: np.ndarray,
    model_affine_ras: np.ndarray,
    source_affine_ras: np.ndarray,
    shape: tuple[int, ...],
    order: int,
) -> np.ndarray:
    """``values`` on the model's grid resampled onto a series' own grid (both affines: voxel ->
    RAS mm): source index -> RAS -> model index, zero outside the model's window. ``order`` 0 for
    labels (a voxel takes the label it falls in), 1 for a map; the result keeps ``values``' dtype.
    One resampling for the outline (``lesion_labels_on_source``) and the viewer's saliency map."""
    to_model = np.linalg.inv(np.asarray(model_affine_ras, float)) @ np.asarray(
        source_affine_ras, float
    )
    return ndimage.affine_transform(
        values,
        to_model[:3, :3],
        offset=to_model[:3, 3],
        output_shape=shape,
        order=order,
        mode="constant",
        cval=0,
    ).astype(values.dtype)
