"""Volumes: DICOM series (single-frame stacks and enhanced multi-frame objects) read into 3D arrays
with their patient geometry, written back as series, and the demo's 3D phantoms (brain MR on the
MNI152 template, thorax CT). Imports nothing of ``analytics`` or ``dashboard``.

Modules: ``sources`` (folders, uploads and zips, safely), ``geometry`` (positions, spacing,
affines), ``series`` (grouping and stacking, with the reasons a series is refused), ``write`` (a
volume as a DICOM series), ``phantoms`` (the demo's brain and thorax volumes with true masks),
``segment`` (the 3D read: preparation with MONAI transforms, input guard, sliding-window
segmentation, lesion volume and RECIST diameter), ``bundle`` (3D models as MONAI bundles: the
built-in one, registering your own, their input contract), ``validate`` (a 3D model's entry in
``oncolens validate imaging``: guard measured afresh, card figures, saliency verdicts). ``segment``
and ``bundle`` import
MONAI and torch lazily or at their own import, never through this package's ``__init__``.
"""

from models.volumes.series import (
    MIN_SLICES,
    DuplicateSliceError,
    IncompleteSeriesError,
    InconsistentSeriesError,
    NotAVolumeError,
    SeriesFailure,
    SeriesInfo,
    Volume,
    VolumeError,
    VolumeSet,
    read_volumes,
    scan_series,
)
from models.volumes.sources import UnsafeArchiveError

__all__ = [
    "MIN_SLICES",
    "DuplicateSliceError",
    "IncompleteSeriesError",
    "InconsistentSeriesError",
    "NotAVolumeError",
    "SeriesFailure",
    "SeriesInfo",
    "UnsafeArchiveError",
    "Volume",
    "VolumeError",
    "VolumeSet",
    "read_volumes",
    "scan_series",
]
