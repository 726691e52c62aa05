"""An upload of several DICOM files or a zip on the Imaging page: each series once, in 3D.

Why a panel of its own: a series uploaded file by file (or zipped) must be read the way a stored
series is (docs/volumes.md, "Which series is a volume"), not as N single images, and nothing of it
may be shown before it is de-identified. The order is fixed:

1. the files are taken from the uploads and zips by ``models.volumes.sources.collect`` (in memory,
   size and zip-bomb limits, no path built from a name in the input); an unsafe archive stops the
   upload with the reason;
2. with a patient open, every file's identifiers are compared with hers *before*
   de-identification (which replaces them); any mismatch needs the user's confirmation, audited
   once for the upload (field names and how many files, never the identifiers);
3. ``models.volumes.uploads.read_upload`` de-identifies every file with the store's key and sorts
   them into volumes, refused series and 2D images (cached per upload by ``resources``);
4. the user picks one volume or image; a volume is shown with its 3D read exactly as a stored
   series (``dashboard.components.viewer.imaging.show_view``), a 2D image goes back to the page's
   2D read. Files not read and refused series are listed with their reasons: one broken series
   never stops the others. A series that lost a file to step 2 (its identifiers could not be
   read) is refused as a whole, naming the file, as ``oncolens ingest`` refuses a series with a
   crashed slice: at an end of the stack no gap would show, and the 3D read would be one slice
   short, silently.

Nothing is stored: the upload lives in this session's memory until it is ingested
(``oncolens ingest``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import streamlit as st

from analytics.governance import audit
from dashboard import resources
from dashboard.components.viewer import imaging as viewer
from dashboard.figures import formats
from dashboard.panels import deid as deid_panel
from dashboard.session import signoff
from models.dicom import reader as dicom
from models.volumes.series import SeriesFailure, scan_series
from models.volumes.sources import Item, Skipped, UnsafeArchiveError, collect, is_zip

PICK_KEY = "imaging_upload_pick"
_FOR_KEY = "imaging_upload_for"  # which upload the pick belongs to
_LISTED = 12  # reasons listed before "and N more"


@dataclass(frozen=True, eq=False)
class UploadChoice:
    """What the page goes on with: ``image`` (de-identified bytes of a 2D image to read as
    before), or ``view`` (a volume shown with a read, to audit with ``inputs_sha256``), or
    neither (the panel said why; the page stops). ``upload_id`` goes into the viewing event's
    details, as into the identity confirmation's."""

    image: bytes | None = None
    view: Any = None
    inputs_sha256: str | None = None
    upload_id: str | None = None  # the hash of the whole upload, as its identity event names it


def is_single_file(uploads: list) -> bool:
    """One file that is not a zip and not a volume on its own: the 2D path of the page, exactly
    as before this panel.

    A lone file whose frames make a volume by the rule of a stored series (``SeriesInfo.
    looks_like_volume``: an enhanced multi-frame object with 3 or more parallel positioned frames
    of one matrix size) goes through this panel like a multi-file upload, so it is read once, in
    3D (issue 21). Decided from its header alone (``scan_series`` stops before the pixels; nothing
    of it is shown before de-identification); a file whose header cannot be parsed stays on the
    2D path, which says why it cannot be shown."""
    if len(uploads) != 1:
        return False
    data = uploads[0].getvalue()
    if is_zip(data[:4]):
        return False
    try:
        infos, _, _ = scan_series([(str(uploads[0].name), data)])
    except Exception:  # noqa: BLE001 - any header the scan cannot take: the 2D path says why
        return True
    return not any(info.looks_like_volume for info in infos)


def _digest(items: list[Item]) -> str:
    """One hash for an upload (its files' names and bytes), the cache key of its contents."""
    return audit.inputs_hash(*(part for i in items for part in (i.label, i.data or b"")))


def _identity_ok(
    ref: resources.StoreRef, person_id: int, items: list[Item], upload_id: str
) -> tuple[bool, list[Skipped], dict[str, tuple[str, ...]]]:
    """Every file of the upload checked against the open patient before de-identification;
    the fields that differ (with how many files) need one confirmation, audited once (with the
    upload's id, which its viewing event carries too). Also returns the files whose identifiers
    could not be read, each with its reason: they are left out of the upload and listed (a file
    that cannot be checked is never shown under her), whatever the reader raised, and, per file
    kept, the files left out of its series (``_series_losses``)."""
    key = f"imaging_upload_identity_{upload_id[:16]}_{person_id}"
    if key not in st.session_state:  # once per upload and patient: headers only, not per rerun
        identity = resources.patient_identity(ref, person_id)
        counts: dict[str, int] = {}
        unreadable: list[Skipped] = []
        for item in items:
            try:
                fields = deid_panel.identity_mismatches(item.data or b"", identity)
            except dicom.DicomReadError as exc:
                unreadable.append(Skipped(item.label, _unchecked(str(exc))))
                continue
            # any other failure of the reader on one file is that file's reason, never a
            # traceback (the type only: a message may quote a header value)
            except Exception as exc:  # noqa: BLE001
                unreadable.append(
                    Skipped(item.label, _unchecked(f"damaged DICOM file ({type(exc).__name__})"))
                )
                continue
            for name in fields:
                counts[name] = counts.get(name, 0) + 1
        checked = len(items) - len(unreadable)
        st.session_state[key] = (
            [f"{name} ({n} of {checked} files)" for name, n in counts.items()],
            unreadable,
            _series_losses(items, {s.label for s in unreadable}) if unreadable else {},
        )
    mismatched, unreadable, losses = st.session_state[key]
    if not mismatched:
        return True, list(unreadable), losses
    gone = {s.label for s in unreadable}
    kept = [i for i in items if i.label not in gone]
    hashes = b"".join(hashlib.sha256(i.data or b"").digest() for i in kept)
    ok = deid_panel.confirm_identity(
        ref.path, hashes, person_id, mismatched, upload_id=upload_id, files=len(kept)
    )
    return ok, list(unreadable), losses


def _series_losses(items: list[Item], gone: set[str]) -> dict[str, tuple[str, ...]]:
    """Per file kept, the files of its series left out (``gone``), from the raw headers
    (``scan_series``: headers only, nothing shown, the series UIDs never kept): the volume those
    files belong to would miss their slices. A header that cannot be scanned either tells nothing
    (its file is not in a series), whatever the parser raised."""
    series_of: dict[str, str] = {}
    for item in items:
        try:
            _, owner, _ = scan_series([(item.label, item.data or b"")])
        except Exception:  # noqa: BLE001 - a damaged header: no series known for it
            continue
        if item.label in owner:
            series_of[item.label] = owner[item.label]
    lost: dict[str, list[str]] = {}
    for label in gone:
        if label in series_of:
            lost.setdefault(series_of[label], []).append(label)
    return {
        label: tuple(sorted(lost[uid]))
        for label, uid in series_of.items()
        if uid in lost and label not in gone
    }


def _refuse_incomplete(contents, losses: dict[str, tuple[str, ...]]) -> Any:
    """The upload's volumes that lost files to the identity check, moved to its refused series
    with the reason naming those files (the read of ``oncolens ingest``'s ``_incomplete``)."""
    volumes, refused = [], []
    for volume in contents.volumes:
        lost = sorted(
            {
                name
                for source in volume.sources
                for name in losses.get(source, losses.get(source.rsplit(" frame ", 1)[0], ()))
            }
        )
        if not lost:
            volumes.append(volume)
            continue
        n = len(lost)
        names = ", ".join(_shown(s) for s in lost[:3]) + (f" and {n - 3} more" if n > 3 else "")
        refused.append(
            SeriesFailure(
                volume.series_instance_uid,
                tuple(volume.sources),
                f"incomplete series: {n} of its {len(volume.sources) + n} images could not be "
                f"read (their identifiers could not be checked: {names}), so the volume would "
                "miss their slices; it is not read in 3D",
                "IncompleteSeriesError",
            )
        )
    if not refused:
        return contents
    return replace(contents, volumes=tuple(volumes), failures=(*contents.failures, *refused))


def _unchecked(why: str) -> str:
    """A file left out because its identifiers could not be compared with the open patient's."""
    return f"{why.rstrip('.')}; its identifiers could not be checked against the open patient"


def _volume_label(volume) -> str:
    z, y, x = volume.shape
    return f"series of {z} images (3D) · {volume.modality or 'unknown modality'} · {x}×{y}×{z}"


def _deid_line(contents) -> None:
    """One line before anything of the upload is shown: it was de-identified, nothing is stored."""
    st.success(
        f"{len(contents.reports)} file(s) de-identified before display (DICOM PS3.15 Annex E "
        "Basic Profile). Nothing is stored unless you ingest the files.",
        icon=":material/shield_person:",
    )


def _details(contents) -> None:
    """Under the image: what was not read and why, and the de-identification report per file."""
    lines = [
        f"Series of {len(f.files)} file(s) starting with {_shown(f.files[0]) if f.files else '?'}: {f.error}"
        for f in contents.failures
    ] + [f"{_shown(s.label)}: {s.reason}" for s in contents.skipped]
    if lines:
        with st.expander("What was not read, and why", icon=":material/rule:"):
            shown = lines[:_LISTED]
            more = len(lines) - len(shown)
            st.markdown(
                "\n".join(f"- {formats.markdown_plain(line)}" for line in shown)
                + (f"\n- and {more} more" if more else "")
            )
    totals: dict[str, int] = {}
    warnings: set[str] = set()
    rows = []
    for label, report in contents.reports:
        counts = report.counts()
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        warnings.update(report.warnings)
        rows.append(
            {
                "file": _shown(label),
                "removed": counts.get("X", 0),
                "emptied": counts.get("Z", 0),
                "dummies": counts.get("D", 0),
                "UIDs remapped": counts.get("U", 0),
                "warning": "; ".join(report.warnings),
            }
        )
    for warning in sorted(warnings):
        st.warning(f"An image of this upload {warning}.", icon=":material/warning:")
    with st.expander("De-identification report, per file (what changed, never the values)"):
        st.caption(
            f"In all: {totals.get('X', 0)} attributes removed, {totals.get('Z', 0)} emptied, "
            f"{totals.get('D', 0)} replaced by dummies, {totals.get('U', 0)} UIDs remapped with "
            "this store's key; private tags removed."
        )
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _shown(label: str) -> str:
    """A file's name as the page shows it: a zip member by its own name, without the folders
    above it inside the archive, which exports often name after the patient (the de-identified
    page must not show them). The uploaded file's own name is on screen in the uploader anyway."""
    outer, sep, member = label.partition(":")
    if not sep:
        return label
    return f"{outer} › {member.replace(chr(92), '/').rsplit('/', 1)[-1]}"


def render(ref: resources.StoreRef, person_id: int | None, uploads: list) -> UploadChoice:
    """Several files or a zip: checked, de-identified, sorted; one volume or image picked and a
    volume shown with its 3D read. The page audits the view returned and reads a 2D image."""
    try:
        items, skipped = collect((u.name, u.getvalue()) for u in uploads)
    except (UnsafeArchiveError, ValueError) as exc:
        st.error(
            f"This upload is not read: {formats.markdown_plain(str(exc))}.", icon=":material/block:"
        )
        return UploadChoice()
    if not items:
        why = formats.markdown_plain(
            "; ".join(f"{_shown(s.label)}: {s.reason}" for s in skipped[:3])
        )
        st.error(
            "This upload holds no file to read"
            + (f" ({why})" if why else " (an empty archive?)")
            + ". Upload DICOM files, or a zip of them.",
            icon=":material/block:",
        )
        return UploadChoice()
    # the upload's id: the hash of everything uploaded (no identifier), in the details of both its
    # audit events (the identity confirmation and the viewing), so the two can be joined
    upload_id = _digest(items)
    losses: dict[str, tuple[str, ...]] = {}  # per file kept, the files its series lost
    if person_id is not None:
        ok, unreadable, losses = _identity_ok(ref, person_id, items, upload_id)
        if not ok:
            return UploadChoice()
        if unreadable:  # left out, each listed with its reason under the image
            gone = {s.label for s in unreadable}
            items = [i for i in items if i.label not in gone]
            skipped = [*skipped, *unreadable]
        if not items:
            why = formats.markdown_plain(
                "; ".join(f"{_shown(s.label)}: {s.reason}" for s in unreadable[:3])
            )
            st.error(f"No file of this upload can be read ({why}).", icon=":material/block:")
            return UploadChoice()
    digest = _digest(items)  # what is de-identified and cached: the files kept
    try:
        with st.spinner(f"De-identifying {len(items)} file(s) and sorting them into series..."):
            contents = resources.upload_contents(ref.path, digest, tuple(items))
    except OSError as exc:  # the store's de-identification key cannot be read or created
        st.error(
            f"This upload cannot be de-identified, so it is not shown: {exc.strerror or exc}.",
            icon=":material/block:",
        )
        return UploadChoice()
    if skipped:  # zip members skipped by collect (encrypted, nested): listed with the rest
        contents = _with_skipped(contents, skipped)
    if losses:  # a volume one slice short is never read
        contents = _refuse_incomplete(contents, losses)
    if contents.empty:
        reasons = formats.markdown_plain(
            "; ".join(f"{_shown(s.label)}: {s.reason}" for s in contents.skipped[:3])
        )
        st.error(
            f"No DICOM image in this upload ({reasons}"
            + (f"; and {len(contents.skipped) - 3} more" if len(contents.skipped) > 3 else "")
            + ").",
            icon=":material/block:",
        )
        return UploadChoice()
    if not contents.volumes and not contents.images:  # every series refused: nothing to pick
        st.error(
            f"Nothing in this upload can be shown: {len(contents.failures)} series refused and "
            f"{len(contents.skipped)} file(s) not read (listed below).",
            icon=":material/block:",
        )
        _details(contents)
        return UploadChoice()
    _deid_line(contents)
    options: dict[int, str] = {i: _volume_label(v) for i, v in enumerate(contents.volumes)} | {
        -1 - i: f"image · {_shown(label)} (2D)" for i, (label, _) in enumerate(contents.images)
    }
    if st.session_state.get(_FOR_KEY) != digest or st.session_state.get(PICK_KEY) not in options:
        st.session_state[_FOR_KEY] = digest
        st.session_state[PICK_KEY] = next(iter(options))  # a volume first: what a series is for
    # the picker and what was left out share a row, so that the image stays high on the screen
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    pick = left.selectbox(
        f"In this upload: {len(contents.volumes)} volume(s), {len(contents.images)} 2D image(s)",
        list(options),
        format_func=options.get,
        key=PICK_KEY,
    )
    if contents.failures or contents.skipped:
        right.warning(
            f"{len(contents.failures)} series refused and {len(contents.skipped)} file(s) not "
            "read: listed under the image.",
            icon=":material/rule:",
        )
    if pick < 0:  # a 2D image: the page reads it as a single file, below these lines
        _details(contents)
        return UploadChoice(image=contents.images[-1 - pick][1], upload_id=upload_id)
    volume = contents.volumes[pick]
    with st.spinner("Reading the volume in 3D..."):
        view = resources.upload_view(digest, volume)
    sha = contents.volume_sha256.get(volume.series_instance_uid)
    shown = viewer.show_view(
        view,
        asked_key=f"oncolens.upload_saliency.{digest}.{pick}",
        saliency=lambda: resources.upload_saliency(digest, view, "gradcam"),
        # the ethics board's sign-off, as for a stored series' 3D read and a 2D read: a banner
        # in the read column, or the read withheld (the volume still shown); no subject, as
        # for a 2D upload
        gate=lambda v: signoff.gate_view(ref, v),
    )
    _details(contents)
    return UploadChoice(view=shown, inputs_sha256=sha, upload_id=upload_id)


def _with_skipped(contents, skipped: list) -> Any:
    """The upload's contents with the files ``collect`` left out of the zips added to the list."""
    return replace(contents, skipped=(*skipped, *contents.skipped))
