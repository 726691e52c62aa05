"""Imaging: open a study (the patient's, the clinic's latest, or an upload), see it, get the AI read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from analytics import store
from analytics.governance import audit
from analytics.patients import UnknownPatientError
from dashboard import resources
from dashboard.components.viewer import imaging as viewer
from dashboard.panels import deid as deid_panel
from dashboard.panels import pacs as pacs_panel
from dashboard.panels import saliency as saliency_panel
from dashboard.panels.uploads import series as upload_panel
from dashboard.services import plain_language
from dashboard.session import auth, signoff, state, trail
from models.deid import deidentify
from models.dicom import reader as dicom
from models.inference.read import UNCERTAIN_MARGIN, NoModelForImageError
from models.inference.registry import ModelUnavailableError
from models.inference.tasks import ImageFacts, choose_model
from models.radiomics import feature_rows

UPLOAD = "Upload DICOM files (an image, a series or a zip)"
UNCERTAIN_BELOW = 0.70  # top-class probability under which the read is flagged as uncertain

auth.require_page("imaging")
st.title("Imaging")
st.caption(
    "Research and decision support, not a medical device. The AI read is a second opinion "
    "from a model trained on synthetic phantoms; the clinician decides."
)

ref = resources.require_store()
choice = state.patient_choice()
shown_patient = choice.person_id
images = pd.DataFrame()
heading = "Most recent images in the clinic"
if choice.is_invalid:
    st.warning(
        f"“{choice.raw}” is not a patient id (a whole number). Search by MRN in the sidebar."
    )
elif choice.person_id is not None:
    try:
        summary = resources.patient_summary(ref, choice.person_id)
    except UnknownPatientError as exc:
        st.warning(f"{str(exc).capitalize()}. Check the id, or search by MRN in the sidebar.")
        st.stop()
    try:
        state.patient_shown(ref.path, summary.person_id, page="imaging")
    except store.StoreError as exc:  # fail closed: her images are not shown unaudited
        st.error(
            "This patient's images are not shown because the view could not be written to the "
            f"audit trail ({exc}). Try again in a moment."
        )
        st.stop()
    images = resources.patient_images(ref, summary.person_id)
    heading = f"Images of {summary.mrn} · id {summary.person_id}"
    if images.empty:
        st.info(
            f"No image files on record for this patient ({len(summary.imaging_studies)} studies in the "
            "record). Upload a file below, or ingest the study with `oncolens ingest`.",
        )
else:
    images = resources.recent_images(ref)
    if images.empty:
        st.info(
            "No image files on record yet. Run `oncolens demo` (it writes demo studies) or upload a file."
        )


def _label(i: int, row: pd.Series) -> str:
    date = pd.Timestamp(row["study_date"]).date().isoformat()
    who = "" if choice.person_id is not None else f"patient {row['person_id']} · "
    desc = row["study_description"] or row["body_part"] or ""
    # a series that is a volume is offered once, for the 3D read (docs/volumes.md), never as slices
    what = f"series of {row['images']} images (3D)" if row["is_volume"] else f"image {i + 1}"
    return f"{who}{date} · {row['modality']} · {desc} · {what}"


labels = (
    {-1: UPLOAD}
    | {i: _label(i, r) for i, (_, r) in enumerate(images.iterrows())}
    | {-2: viewer.DEMO_VOLUME}
)
st.subheader(heading)
default = 0 if len(labels) > 1 else -1  # a key of ``labels``: the newest image, else the upload
wanted_study = st.query_params.get("study")  # set by the Patient page's "open a study" buttons
if wanted_study:
    hits = (
        np.flatnonzero(images["study_uid"].astype(str).to_numpy() == wanted_study)
        if not images.empty
        else np.array([], dtype=int)
    )
    # the link's study is the one shown: a picker value kept from an earlier visit must not
    # win over it (the widget's index only applies to a new widget), so set it once per link
    link_default = int(hits[0]) if hits.size else -1
    if st.session_state.get("imaging_study_link") != wanted_study:
        st.session_state["imaging_study_link"] = wanted_study
        st.session_state["imaging_source"] = link_default
    default = link_default
    if not hits.size:
        st.warning(
            "The study opened by this link has no image files on record"
            + (" for this patient" if choice.person_id is not None else "")
            + ". No other study is shown in its place: pick an image below, or upload one.",
            icon=":material/image_not_supported:",
        )
# the picker and the PACS pull share a row, so that at 1366 x 768 the image sits above the fold
pick_column, pacs_column = st.columns([3, 2], vertical_alignment="bottom")
with pacs_column:
    pacs_panel.render(ref)
if st.session_state.get("imaging_for") != choice.person_id:  # another patient: start at the default
    st.session_state["imaging_for"] = choice.person_id
    st.session_state.pop("imaging_source", None)
if st.session_state.get("imaging_source") not in labels:
    st.session_state["imaging_source"] = default  # the widget's value lives in session state only
picked = pick_column.selectbox(
    "Image or series", list(labels), format_func=labels.get, key="imaging_source"
)

if picked == -2:  # the viewer's demo volume: no file, no AI read
    viewer.show_demo_volume(key="imaging_viewer_demo")
    st.stop()
if picked >= 0 and bool(images.iloc[picked]["is_volume"]):  # a volume: its 3D read, not slices
    series = images.iloc[picked]
    subject_id = int(series["person_id"])
    shown_view = viewer.show_series(
        ref,
        subject_id,
        str(series["series_uid"]),
        gate=lambda view: signoff.gate_view(ref, view, subject=subject_id),
    )
    if shown_view is not None:
        trail.shown(
            ref.path,
            "ai_read_refused" if shown_view.read.refused else "ai_read_shown",
            subject=int(series["person_id"]),
            model_name=shown_view.read.model,
            model_version=shown_view.read.model_version,
            details={"kind": "volume", "label": shown_view.read.label},
        )
    pacs_panel.volume_reads(ref, int(series["person_id"]))
    st.stop()

data: bytes | None = None
upload_id: str | None = None  # an upload's id (its hash), joining its identity and read events
source_path: Path | None = None
stored_description: str | None = None  # the store keeps it; a de-identified file does not
if picked == -1:
    uploads = st.file_uploader(
        "DICOM files (.dcm): one image, the files of a series, or a .zip",
        type=None,
        accept_multiple_files=True,
        key="imaging_upload",
        help="Any DICOM images; a series of slices (several files or a zip) is read once, in 3D. "
        "Everything is de-identified before it is shown, and nothing is stored unless you "
        "ingest it.",
    )
    if uploads and not upload_panel.is_single_file(uploads):  # a series, several files, a zip
        got = upload_panel.render(ref, choice.person_id, uploads)
        if got.view is not None:  # audited like a stored series' 3D read
            trail.shown(
                ref.path,
                "ai_read_refused" if got.view.read.refused else "ai_read_shown",
                model_name=got.view.read.model,
                model_version=got.view.read.model_version,
                inputs_sha256=got.inputs_sha256,
                details={
                    "kind": "volume",
                    "label": got.view.read.label,
                    "source": "upload",
                    "upload_id": got.upload_id,  # as its identity confirmation's event
                },
            )
        if got.image is None:
            st.stop()
        data = got.image
        upload_id = got.upload_id
    elif uploads:
        raw = uploads[0].getvalue()
        upload_id = hashlib.sha256(raw).hexdigest()  # in both of its audit events' details
        if choice.person_id is not None:
            # checked BEFORE de-identification, which replaces the very identifiers compared
            try:
                mismatched = deid_panel.identity_mismatches(
                    raw, resources.patient_identity(ref, choice.person_id)
                )
            except dicom.DicomReadError as exc:
                st.error(f"This file cannot be shown: {exc}", icon=":material/broken_image:")
                st.stop()
            # any other failure of the reader is a message too, never a traceback (its type
            # only: a message may quote a header value)
            except Exception as exc:  # noqa: BLE001
                st.error(
                    f"This file cannot be shown: a damaged DICOM file ({type(exc).__name__}); "
                    "its identifiers could not be checked against the open patient.",
                    icon=":material/broken_image:",
                )
                st.stop()
            if mismatched and not deid_panel.confirm_identity(
                ref.path, raw, choice.person_id, mismatched, upload_id=upload_id
            ):
                st.stop()
        try:
            data, deid_report = deid_panel.deidentify_upload(ref.path, raw)
        except (deidentify.DeidentificationError, OSError) as exc:
            st.error(
                f"This file cannot be de-identified, so it is not shown: {exc}",
                icon=":material/block:",
            )
            st.stop()
        deid_panel.render_report(deid_report)
else:
    row = images.iloc[picked]
    source_path = Path(row["file_path"])
    if isinstance(row["study_description"], str) and row["study_description"]:
        stored_description = row["study_description"]
    try:
        data = source_path.read_bytes()
    except OSError as exc:
        st.error(
            f"The file on record for this image cannot be read ({source_path}): {exc.strerror or exc}."
        )
        st.stop()

if data is None:
    st.stop()

# The AI read's audit events name the patient whose image it is (none for an upload).
image_subject = None if picked == -1 else int(images.iloc[picked]["person_id"])


@st.fragment
def image_and_read(
    data: bytes,
    source_path: Path | None,
    stored_description: str | None,
    subject: int | None,
    upload_id: str | None = None,
) -> None:
    """One 2D image: the viewer, the AI read and the saliency section, rerun on their own.

    Why a fragment (issue 23): picking a saliency method or a class, moving the opacity or the
    top-k slider, or another frame changes only what this draws; rerunning the whole page for it
    redid the sidebar, the patient lookups, the picker, the PACS panel and an upload's
    de-identification, and made integrated gradients take seconds on screen where the map takes
    0.3 s. Its widgets rerun only this function (with the arguments of the last full run);
    everything it needs comes in as arguments or from the cached reads in ``resources``.
    """
    # an upload's read events carry its id, as its identity confirmation's event does
    upload_detail = {"upload_id": upload_id} if upload_id else {}
    frame = int(st.session_state.get("imaging_frame", 0))
    try:
        header = dicom.read_header(data)
        n_frames = int(getattr(header, "NumberOfFrames", 1) or 1)
        frame = min(frame, max(n_frames - 1, 0))
        image = resources.read_image(data, frame)
    except dicom.DicomReadError as exc:
        st.error(f"This file cannot be shown: {exc}", icon=":material/broken_image:")
        return

    view, read = st.columns([3, 2], gap="large")

    with view:
        if image.n_frames > 1:
            st.slider("Frame", 0, image.n_frames - 1, key="imaging_frame")
        # the viewer is drawn here once the saliency map is known (below); window/level,
        # scrolling and overlays then happen in the browser, without a round trip
        viewer_slot = st.container()
        shown = dicom.display(image)  # the file's window: the saliency figure's background

    with read:
        st.markdown(
            "#### AI read",
            help=plain_language.glossary_help("calibrated probability", "AUC", "calibration"),
        )
        # the one rule of models.inference.tasks, with what the page knows of the image: its file,
        # and for a stored image the description the store kept (ingest strips it from the copy)
        choice = choose_model(
            ImageFacts(
                image.modality, image.body_part, image.study_description or stored_description
            )
        )
        task = choice.task
        ai = None
        if task is None:
            st.warning(
                f"{choice.reason.capitalize()}. The image is shown; no AI read is given.",
                icon=":material/block:",
            )
        else:
            try:
                ai = resources.ai_read(data, frame, image, task.name)
            except (ModelUnavailableError, NoModelForImageError) as exc:
                st.error(f"The {task.title.lower()} cannot run: {exc}", icon=":material/error:")
        if (
            ai is not None
            and ai.refused is None
            and not signoff.gate(
                ref,
                ai.model,
                ai.model_version,
                subject=subject,
            )
        ):
            ai = None  # withheld until the ethics board approves this version (admin setting)
        if ai is not None and ai.refused is not None:
            # a refusal is a result: said plainly, audited, and nothing of a read is drawn
            check = ai.input_check
            trail.shown(
                ref.path,
                "ai_read_refused",
                subject=subject,
                model_name=ai.model,
                model_version=ai.model_version,
                inputs_sha256=audit.inputs_hash(data, frame),
                details={"score": None if check is None else round(check.score, 3)} | upload_detail,
            )
            st.error(
                f"No AI read: {ai.refused}.",
                icon=":material/do_not_disturb_on:",
            )
            st.caption(
                f"{ai.model_title} v{ai.model_version} · input check score "
                f"{check.score if check else float('nan'):.2f} (threshold {check.threshold if check else float('nan'):.2f}; "
                "set on held-out training-like images, docs/imaging.md). The image is shown as it is; "
                "no label, outline or measurement is given for it."
            )
            ai = None  # the saliency section and the viewer treat it as an image without a read
        elif ai is not None:
            card = resources.imaging_model(ai.model).card
            trail.shown(
                ref.path,
                "ai_read_shown",
                subject=subject,
                model_name=ai.model,
                model_version=ai.model_version,
                inputs_sha256=audit.inputs_hash(data, frame),
                details={"label": ai.label, "probability": round(float(ai.confidence), 4)}
                | upload_detail,
            )
            word = "Calibrated probability" if ai.calibrated else "Probability"
            between = ai.uncertain_between
            label = (ai.label or "").replace("_", " ")
            if between is not None:
                (a, pa), (b, pb) = between
                st.metric(
                    "Most likely",
                    "Uncertain",
                    help=f"The top two classes are within {UNCERTAIN_MARGIN:.0%} of each other.",
                )
                st.warning(
                    f"Uncertain between **{a.replace('_', ' ')}** ({pa:.1%}) and "
                    f"**{b.replace('_', ' ')}** ({pb:.1%}): the gap is under {UNCERTAIN_MARGIN:.0%}, "
                    "so no label is given. Look closely.",
                    icon=":material/balance:",
                )
            else:
                sure = ai.confidence >= UNCERTAIN_BELOW
                st.metric(
                    "Most likely",
                    label.capitalize(),
                    help=plain_language.glossary_help(
                        "calibrated probability", lead="The class with the highest probability."
                    ),
                )
                (st.success if sure else st.warning)(
                    f"{word} {ai.confidence:.0%}"
                    + (
                        ""
                        if sure
                        else f" (below {UNCERTAIN_BELOW:.0%}: uncertain read, look closely)"
                    ),
                )
            for spot in ai.weak_spots:
                st.warning(f"Known weak spot: the model {spot}.", icon=":material/report:")
            st.info(
                plain_language.ai_read_summary(
                    finding=ai.label or "",
                    probability=float(ai.confidence),
                    uncertain_below=UNCERTAIN_BELOW,
                    diameter_mm=ai.lesion.longest_diameter_mm
                    if ai.lesion is not None and image.spacing_mm
                    else None,
                    calibrated=ai.calibrated,
                    uncertain_between=None if between is None else (between[0][0], between[1][0]),
                ),
                icon=":material/record_voice_over:",
            )
            probs = pd.DataFrame(
                {
                    "class": [k.replace("_", " ") for k in ai.probabilities],
                    "probability": list(ai.probabilities.values()),
                }
            )
            st.dataframe(
                probs,
                hide_index=True,
                width="stretch",
                column_config={
                    "probability": st.column_config.ProgressColumn(
                        word, format="percent", min_value=0.0, max_value=1.0
                    )
                },
            )
            metrics = card.get("metrics", {})
            auc = metrics.get(f"auc_{card.get('positive_label')}_vs_rest")
            calibration = card.get("calibration") or {}
            ece = (calibration.get("ece_test") or {}).get("after" if ai.calibrated else "before")
            how_sure = []
            if auc:
                how_sure.append(
                    f"held-out AUC {auc['value']:.2f} (95 % CI {auc['ci_low']:.2f}–{auc['ci_high']:.2f})"
                )
            if ece is not None:
                how_sure.append(
                    f"calibration error {ece:.3f} "
                    + (
                        "(temperature scaling applied)"
                        if ai.calibrated
                        else "(not calibrated: temperature scaling made held-out calibration worse)"
                    )
                )
            st.caption(
                f"{ai.model_title} v{ai.model_version} · {ai.latency_ms:.0f} ms · on synthetic phantoms: "
                + ", ".join(how_sure)
                + ". Never validated on real patients.",
                help=plain_language.glossary_help("AUC", "confidence interval", "calibration"),
            )
            if ai.lesion is not None:
                st.markdown("#### Lesion measurement", help=plain_language.glossary_help("RECIST"))
                rows = pd.DataFrame(
                    feature_rows(ai.lesion, spacing_known=image.spacing_mm is not None)
                )
                if image.spacing_mm is None:
                    st.warning("The file has no pixel spacing: sizes in mm cannot be given.")
                else:
                    st.metric(
                        "Longest diameter (RECIST 1.1)",
                        f"{ai.lesion.longest_diameter_mm:.1f} mm",
                        help=plain_language.glossary_help(
                            "RECIST",
                            lead="Maximum Feret diameter of the AI lesion outline in the image plane.",
                        ),
                    )
                st.dataframe(
                    rows,
                    hide_index=True,
                    width="stretch",
                    # units wide enough to read whole ("modality units" was cut to "mod…", issue 20)
                    column_config={
                        "value": st.column_config.NumberColumn(format="%.3g"),
                        "unit": st.column_config.TextColumn(width="medium"),
                        "feature": st.column_config.TextColumn(width="large"),
                    },
                )
            elif ai.label in (task.lesion_labels if task else ()):
                st.info(
                    "The model reports a lesion class but outlined no lesion; no measurement is given."
                )
            else:
                st.caption("No lesion outlined: nothing to measure.")

    truth = None
    if source_path is not None:
        mask_file = source_path.with_name(f"{source_path.stem}_mask.png")
        if mask_file.exists():
            from PIL import Image  # lazy: only demo phantoms have a true mask beside them

            truth = np.asarray(Image.open(mask_file)) > 0

    explained = saliency_panel.render(
        data=data,
        frame=frame,
        image=image,
        ai=ai,
        shown=shown,
        spacing=image.spacing_mm,
        subject=subject,  # as the AI read's event
    )

    with viewer_slot:
        viewer.show_image(
            image,
            header,
            ai_mask=ai.lesion_mask if ai else None,
            truth_mask=truth,
            explanation=explained,
            key="imaging_viewer",
        )
        fov = image.field_of_view_mm
        st.caption(
            f"{image.modality} · {image.rows}×{image.columns} px"
            + (
                f" · {image.spacing_mm[0]:.3g}×{image.spacing_mm[1]:.3g} mm/px ({image.spacing_source})"
                f" · field {fov[0]:.0f}×{fov[1]:.0f} mm"
                if image.spacing_mm and fov
                else " · no pixel spacing: sizes in pixels"
            )
            + (f" · frame {frame + 1} of {image.n_frames}" if image.n_frames > 1 else "")
            + (" · VOI LUT shown as its window" if image.voi_lut_applied else "")
        )


image_and_read(data, source_path, stored_description, image_subject, upload_id)
if shown_patient is not None:
    pacs_panel.volume_reads(ref, shown_patient)
