"""The tumour-board report of one patient: gather everything, then write one PDF.

One code path for ``oncolens report`` and the Patient page's download button.
It lives in ``dashboard/`` because it draws the app's own figures
(``patient_figures.patient_timeline_figure``, ``treatment_figures.benefit_waterfall_figure``,
``saliency_figures.overlay_rgb``) from both libraries' results.

What it holds (``SECTIONS``, each a heading in the PDF): the patient summary,
key images with their saliency overlays, the AI findings and measurements, the
timeline and forecasts, the recommendation with its SHAP waterfall, the model
versions, and the decision-support disclaimer, with the date and who generated
it. A part that cannot be computed (no model, no images) says why; only an
unknown patient stops the report (``UnknownPatientError``).

Identifiers: pseudonymised by default. The header then carries the store's
keyed pseudonym (``analytics.governance.pseudonyms.pseudonym``, the one the Governance page
shows) and the age, never the name, MRN, id or birth date; ``include_names``
(the CLI's ``--include-names``, the page's checkbox for clinical roles)
adds them. Images in the report are drawn from the de-identified copies the
store keeps.

Nothing is half-written: the PDF is built in memory and written to a temporary
file in the target folder, then renamed (``write_report``); each generation is
one audit event (``tumour_board_report``), after the file is in place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from PIL import Image

from analytics import store
from analytics.episodes import care_setting, line_progression_risk
from analytics.governance import audit, pseudonyms, users
from analytics.patients import UnknownPatientError, patient_summary
from analytics.treatment.decisions import patient_decisions
from analytics.treatment.horizon import horizon_label
from dashboard.figures import formats
from dashboard.services import plain_language
from dashboard.services.report_data import (
    DISCLAIMER,
    SECTIONS,
    KeyImage,
    ReportData,
    without_other_options,
)
from dashboard.services.report_pdf import render_pdf
from models.inference.loader import ModelLoader
from models.provenance import oncolens_version

if TYPE_CHECKING:  # the treatment code is imported when a report is gathered, not before
    from analytics.treatment.clinic import ClinicModel

KEY_IMAGES = 2
SALIENCY_METHOD = (
    "gradcam"  # about 10 ms per image (docs/imaging.md); IG would take seconds per image
)


FINDING_COLUMNS = [
    "study_date",
    "modality",
    "model_name",
    "model_version",
    "predicted_class",
    "probability",
    "longest_diameter_mm",
    "source",
]


def _findings(con, person_id: int) -> pd.DataFrame:
    """AI reads filed in the store (``oncolens ingest``), newest first."""
    return con.execute(
        "SELECT s.study_date, s.modality, f.model_name, f.model_version, f.predicted_class, f.probability, "
        "f.longest_diameter_mm, 'stored' AS source FROM ai_finding f "
        "JOIN imaging_instance i ON i.sop_instance_uid = f.sop_instance_uid "
        "JOIN imaging_series se ON se.series_uid = i.series_uid "
        "JOIN imaging_study s ON s.study_uid = se.study_uid "
        "WHERE f.person_id = ? ORDER BY s.study_date DESC, f.finding_id DESC",
        [person_id],
    ).df()


def _image_files(con, person_id: int) -> list[str]:
    """The patient's image files on record, newest study first (the report reads the newest ones)."""
    rows = con.execute(
        "SELECT i.file_path FROM imaging_instance i JOIN imaging_series se ON se.series_uid = i.series_uid "
        "JOIN imaging_study s ON s.study_uid = se.study_uid WHERE s.person_id = ? "
        "ORDER BY s.study_date DESC, i.sop_instance_uid",
        [person_id],
    ).fetchall()
    return [r[0] for r in rows]


def read_and_explain(path: Path, load) -> tuple:
    """(image, model, AI read, Grad-CAM explanation) of one file, computed here (the CLI's path).

    The app passes its own (``gather``'s ``reads``): the same calls through its caches, so a
    report reuses what the Imaging page and earlier reports of the same images computed.
    Raises ``DicomReadError``, ``NoModelForImageError`` (a refused image included),
    ``ModelUnavailableError``, ``OSError``.
    """
    from models.dicom.reader import (  # lazy: only this section needs it; the app opens its first page without it
        read_dicom,
    )
    from models.inference.read import (  # lazy: only this section needs it; the app opens its first page without it
        model_for,
        read_image,
    )

    # lazy: only this section needs it; the app opens its first page without it
    from models.saliency.methods import explain_image

    image = read_dicom(path)
    model = model_for(image, load)
    ai = read_image(model, image).require_accepted()  # a refused image: no key image
    return image, model, ai, explain_image(model, image, SALIENCY_METHOD)


def _key_image(path: Path, load, reads=None) -> tuple[KeyImage | None, dict | None, str | None]:
    """The image with the AI outline and its saliency map blended in; (image, finding row, note).

    ``reads``: ``path -> (image, model, AI read, explanation)``, ``read_and_explain`` by default.
    """
    # lazy: only this section needs it; the app opens its first page without it
    from dashboard.figures.saliency import overlay_rgb
    from models.dicom.reader import (  # lazy: only this section needs it; the app opens its first page without it
        DicomReadError,
        display,
    )
    from models.inference.read import (  # lazy: only this section needs it; the app opens its first page without it
        NoModelForImageError,
    )

    # lazy: only this section needs it; the app opens its first page without it
    from models.inference.registry import ModelUnavailableError

    try:
        image, model, ai, explanation = (reads or (lambda p: read_and_explain(p, load)))(path)
    except (DicomReadError, NoModelForImageError, ModelUnavailableError, OSError) as exc:
        return None, None, f"{path.name}: {exc}"
    rgb = overlay_rgb(display(image), explanation.attribution, opacity=0.45)
    if ai.lesion_mask is not None:
        # lazy: scipy is imported only when this is used (start-up time)
        from scipy import ndimage

        edge = ai.lesion_mask & ~ndimage.binary_erosion(ai.lesion_mask)
        rgb[edge] = (0, 255, 0)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    size = (
        f", longest diameter {ai.lesion.longest_diameter_mm:.1f} mm"
        if ai.lesion and image.spacing_mm
        else ""
    )
    caption = (
        f"{image.modality} {image.study_date or ''}: {ai.label.replace('_', ' ')} "
        f"(p = {ai.confidence:.2f}{size}). Green: AI lesion outline; heat: Grad-CAM saliency of "
        f"'{explanation.target_label}', cyan: its top 10 %."
    )
    row = {
        "study_date": pd.to_datetime(image.study_date, format="%Y%m%d", errors="coerce"),
        "modality": image.modality,
        "model_name": ai.model,
        "model_version": ai.model_version,
        "predicted_class": ai.label,
        "probability": float(ai.confidence),
        "longest_diameter_mm": float(ai.lesion.longest_diameter_mm)
        if ai.lesion and image.spacing_mm
        else None,
        "source": "read for this report",
        "sha256": str(model.card.get("weights", {}).get("sha256", ""))[:12],
    }
    return KeyImage(caption, buffer.getvalue()), row, None


def _signoffs(con, rec, forecast, findings: pd.DataFrame, db_path: Path) -> dict:
    """The sign-off of every model version whose output the report may show: (name, version) -> Approval
    (of the weights its current card names; a version whose card is gone matches no decision)."""
    # lazy: only the report needs it
    from analytics.governance.lifecycle import approvals
    from dashboard.services import lifecycle  # lazy: only the report needs it
    from models.inference import registry  # lazy: only the report needs it

    keys = {(n, str(registry.load_card(n).get("version"))) for n in registry.available_models()}
    if not findings.empty:
        keys |= {
            (str(n), str(v))
            for n, v in zip(findings["model_name"], findings["model_version"], strict=True)
        }
    if rec is not None:
        keys.add(("treatment", str(rec.model_version)))
    if forecast is not None and forecast.model_version is not None:
        keys.add(("forecast", str(forecast.model_version)))
    ids = lifecycle.version_ids(db_path)
    return {key: approvals.approval(con, *key, ids.get(key)) for key in sorted(keys)}


def _load_models() -> ModelLoader:
    return ModelLoader()  # one loader for the report: each model once, errors per image


def gather(
    db_path: Path,
    person_id: int,
    *,
    include_names: bool = False,
    generated_by: str = "oncolens",
    now: dt.datetime | None = None,
    load=None,
    clinic: ClinicModel | None = None,
    role: str | None = None,
    forecast=None,
    reads=None,
) -> ReportData:
    """Everything the report shows for one patient; ``UnknownPatientError`` when the store has no such patient.

    ``clinic``: the treatment model already loaded (the app's, so the PDF shows the page's
    figures); loaded from beside the store otherwise.
    ``forecast``: her forecast already computed with that model (the app's cached one, the same
    function), so the PDF shows the page's forecast and is not fitted again (seconds, issue 23).
    ``role``: who the report is for. Only roles that may see recommendations
    (``users.sees_recommendation``: the oncologist) get the recommendation, its SHAP waterfall and
    the survival forecast under options she did not receive; anyone else (None included) gets the
    report without them, and a line saying so.
    ``reads``: how a key image is read and explained (``_key_image``); the app's goes through its
    caches.
    Outside the treatment model's scope (``recommendation_scope``: recurrence, metastatic disease)
    there is no recommendation for anyone: the report says why and shows the course, the lines of
    therapy and progression on the current line instead.
    """
    from analytics.forecast.patient import (  # lazy: only this section needs it; the app opens its first page without it
        ForecastError,
        patient_forecast,
    )
    from analytics.treatment.clinic import (  # lazy: only this section needs it; the app opens its first page without it
        load_clinic_model,
        recommendation_for,
    )

    # lazy: only this section needs it; the app opens its first page without it
    from analytics.treatment.model.files import TreatmentModelError
    from analytics.treatment.scope import recommendation_scope  # lazy: as above
    from analytics.worklist.stored import prior_for  # lazy: as above

    # lazy: only this section needs it; the app opens its first page without it
    from dashboard.figures import patient as patient_figures

    # lazy: only this section needs it; the app opens its first page without it
    from dashboard.figures import static as static_figures

    # lazy: only this section needs it; the app opens its first page without it
    from dashboard.figures import treatment as treatment_figures

    db_path = Path(db_path).expanduser()
    now = now or dt.datetime.now()
    load = load or _load_models()
    notes: list[str] = []
    with store.open_store(db_path, read_only=True) as con:
        summary = patient_summary(con, person_id)  # raises UnknownPatientError
        name_row = con.execute(
            "SELECT given_name, family_name, birth_date FROM person WHERE person_id = ?",
            [person_id],
        ).fetchall()[0]
        key = pseudonyms.store_secret(con)
        findings = _findings(con, person_id)
        files = _image_files(con, person_id)
        if clinic is None:
            try:
                clinic = load_clinic_model(db_path, stack_refits=False)
            except TreatmentModelError as exc:
                notes.append(f"No treatment model: {exc}")
        if forecast is None:
            try:
                forecast = patient_forecast(con, person_id, prior_for(con)[0], clinic)
            except ForecastError as exc:
                notes.append(f"No forecast: {exc}")
        setting = care_setting(con, person_id)
        scope = recommendation_scope(con, person_id, setting)
        line_risk = line_progression_risk(con, setting)
        rec = None
        allowed = users.sees_recommendation(role)
        if clinic is not None and allowed and scope.in_scope:
            try:
                rec = recommendation_for(clinic, con, person_id)
            except (ValueError, LookupError) as exc:
                notes.append(f"No recommendation: {exc}")
        # the decision log names the recommended option: shown to the roles that see recommendations
        decisions = patient_decisions(con, person_id) if allowed else None
        signoff = _signoffs(con, rec, forecast, findings, db_path)
    # the ethics board's sign-off (issue 22): a banner in the notes, or the output withheld
    shown = {
        (str(n), str(v))
        for n, v in zip(findings["model_name"], findings["model_version"], strict=True)
    }
    if rec is not None:
        shown.add(("treatment", str(rec.model_version)))
    if forecast is not None and forecast.model_version is not None:
        shown.add(("forecast", str(forecast.model_version)))
    signoff_lines = [signoff[key].banner() or "" for key in sorted(shown) if signoff[key].banner()]
    if rec is not None and signoff[("treatment", rec.model_version)].withheld:
        rec = None
    if forecast is not None and forecast.model_version is not None:
        if signoff[("forecast", forecast.model_version)].withheld:
            forecast = None
    withheld = {key for key, status in signoff.items() if status.withheld}
    if not findings.empty:
        keep = [
            (str(n), str(v)) not in withheld
            for n, v in zip(findings["model_name"], findings["model_version"], strict=True)
        ]
        findings = findings[keep]
    if forecast is not None and not allowed:
        forecast = without_other_options(forecast)
    demo, dx = summary.demographics, summary.diagnosis
    if include_names:
        header = [
            ("Patient", f"{name_row[1].upper()}, {name_row[0]}"),
            ("MRN", demo.mrn),
            ("Id", str(person_id)),
            ("Born", f"{name_row[2]:%Y-%m-%d}"),
        ]
    else:
        label = (
            pseudonyms.pseudonym(key, person_id)
            if key
            else "pseudonym unavailable (store older than schema 3)"
        )
        header = [
            ("Patient (pseudonym)", label),
            ("Identifiers", "withheld (pseudonymised report)"),
        ]
    summary_rows = [
        ("Sex", demo.sex),
        (
            "Age at diagnosis",
            "unknown"
            if demo.age_at_diagnosis_years is None
            else f"{demo.age_at_diagnosis_years} years",
        ),
        ("Menopausal status", demo.menopausal_status),
        ("Site", demo.site),
    ]
    if dx is not None:
        summary_rows += [
            (
                "Diagnosis",
                f"{dx.condition.replace('_', ' ')}, {dx.laterality}, {dx.diagnosis_date:%Y-%m-%d}",
            ),
            ("Stage / grade", f"{dx.stage} / {dx.grade}"),
            ("Tumour size", f"{dx.tumour_size_mm:.0f} mm"),
            ("Positive nodes", str(dx.positive_nodes)),
            (
                "Receptors",
                f"ER {'+' if dx.er_positive else '-'} ({dx.er_fmol:g} fmol/mg), PR "
                f"{'+' if dx.pr_positive else '-'} ({dx.pr_fmol:g} fmol/mg), HER2 "
                f"{'+' if dx.her2_positive else '-'}",
            ),
        ]
    summary_rows.append(("Setting", setting.headline))
    for line in setting.lines:
        summary_rows.append(
            (
                f"Line {line.number}",
                f"{line.regimen or 'regimen not recorded'}, from {line.start_date:%Y-%m-%d} "
                + (
                    f"to {line.end_date:%Y-%m-%d} ({line.end_reason or 'reason not recorded'})"
                    if line.end_date
                    else "(ongoing)"
                ),
            )
        )
    if line_risk is not None and line_risk.risk_6m is not None:
        summary_rows.append(
            (
                "Progression on this line",
                f"{100 * line_risk.risk_6m:.0f} % within 6 months among {line_risk.patients} "
                f"{line_risk.subtype} patients of this clinic on line {line_risk.line} "
                f"(observed, not a model of her)",
            )
        )
    if not summary.treatments.empty and not setting.lines:
        # every treatment of a line, in order (a line holds surgery and radiotherapy too, which
        # carry no regimen: the first row alone printed "None" for an adjuvant course)
        summary_rows.append(
            (
                "Treatment lines",
                "; ".join(
                    f"{line}: {', '.join(dict.fromkeys(str(a) for a in part['agent'].dropna()))} "
                    f"from {part['start_date'].min():%Y-%m-%d}"
                    for line, part in summary.treatments.groupby("line_of_therapy", sort=True)
                ),
            )
        )
    summary_rows.append(
        (
            "Outcome events",
            "none recorded"
            if summary.outcome_events.empty
            else "; ".join(
                f"{r.event_type} {pd.Timestamp(r.event_date):%Y-%m-%d}"
                for r in summary.outcome_events.itertuples()
            ),
        )
    )

    # the figures first, drawn as PNGs by the kept browser (the app's) while the key images are read
    # below (issue 23: the PDF waited for one, then the other)
    fig = patient_figures.patient_forecast_timeline(
        summary,
        forecast,
        survival_absent=patient_figures.survival_title_for(setting, scope.in_scope),
        as_of=setting.as_of,
    )
    figures: list[tuple] = [(fig, 1100, int(fig.layout.height or 940))]
    if scope.in_scope and allowed and rec is not None:
        figures.append(
            (
                treatment_figures.benefit_waterfall_figure(
                    rec.shap, rec.benefit, horizon_days=rec.horizon_days
                ),
                1000,
                None,
            )
        )
    pngs_later = static_figures.figures_png_later(figures)

    key_images: list[KeyImage] = []
    model_rows: dict[str, str] = {}
    live: list[dict] = []
    for path in files:
        if len(key_images) >= KEY_IMAGES:
            break
        image, row, note = _key_image(Path(path), load, reads)
        key = (row["model_name"], row["model_version"]) if row is not None else None
        if key in withheld:
            continue  # the read of a version not approved, where approval is required
        if key in signoff and key not in shown and signoff[key].banner():
            shown.add(key)
            signoff_lines.append(signoff[key].banner() or "")
        if image is not None:
            key_images.append(image)
            live.append(row)
            model_rows[f"Imaging model {row['model_name']}"] = (
                f"{row['model_version']} (weights sha256 {row['sha256']}...)"
            )
        if note:
            notes.append(note)
    if live:
        findings = pd.concat(
            [pd.DataFrame(live)[FINDING_COLUMNS], findings[FINDING_COLUMNS]], ignore_index=True
        )

    forecast_lines: list[str] = []
    if forecast is not None:
        t = forecast.tumour
        forecast_lines.append(
            f"As of {formats.date(forecast.as_of)}. Forecast model: "
            f"{formats.version(forecast.model_version, 'growth-inhibition fit, no version recorded')}."
        )
        if not t.observed.empty:
            last = t.observed.iloc[-1]
            forecast_lines.append(
                f"Lesion: {len(t.observed)} reading(s), last {float(last['mm']):.1f} mm on "
                f"{pd.Timestamp(last['date']).date().isoformat()}, nadir {t.nadir_mm} mm; RECIST "
                f"progression {t.progression_status.replace('_', ' ')}"
                + (f" ({t.progression_date.isoformat()})" if t.progression_date else "")
                + "."
            )
        if t.progression_probability_6m is not None:
            forecast_lines.append(
                f"Probability that a reading in 6 months meets progression: "
                f"{formats.pct(t.progression_probability_6m)}."
            )
        curves = forecast.survival.curves if forecast.survival is not None else {}
        for option, frame in curves.items():
            end = frame.iloc[-1]
            forecast_lines.append(
                f"{option}: recurrence-free to day {end['day']:.0f}: {formats.pct(end['s'])} "
                f"(95 % {formats.pct_interval(end['lo'], end['hi'])})."
            )
        forecast_lines += [f"Note: {n}" for n in [*t.notes, *forecast.notes]]
        model_rows["Forecast"] = formats.version(forecast.model_version)

    recommendation_lines: list[str] = []
    if not scope.in_scope:
        recommendation_lines.append(
            f"Out of the treatment model's scope: {scope.reason}. No first-line options are "
            f"shown; what applies is {scope.what_applies} (summary above)."
        )
    elif not allowed:
        recommendation_lines.append(
            "Treatment recommendation withheld: shown only to the oncologist who decides it with "
            f"the patient (this report was prepared for the role {role or 'unknown'})."
        )
    elif rec is not None:
        for o in rec.options:
            lo, hi = o.rfs_ci
            recommendation_lines.append(
                f"{formats.option(o.treatment)}: {horizon_label(rec.horizon_days)} RFS {formats.pct(o.rfs)} "
                f"(95 % CI {formats.pct_interval(lo, hi)}), RMST {o.rmst_days:.0f} days"
            )
        recommendation_lines += [plain_language.statement(rec), rec.caveat]
        model_rows["Treatment outcome model"] = rec.model_version
    else:
        recommendation_lines.append("No recommendation available (see the notes).")
    pngs = pngs_later()
    timeline_png, waterfall_png = pngs[0], (pngs[1] if len(pngs) > 1 else None)

    model_rows["OncoLens"] = oncolens_version()
    return ReportData(
        person_id=person_id,
        header=header,
        summary_rows=summary_rows,
        findings=findings,
        key_images=key_images,
        timeline_png=timeline_png,
        forecast_lines=forecast_lines,
        recommendation=rec,
        recommendation_lines=recommendation_lines,
        waterfall_png=waterfall_png,
        model_rows=list(model_rows.items()),
        generated_by=generated_by,
        generated_at=now,
        renderer=static_figures.renderer(),
        notes=notes,
        signoff_lines=signoff_lines,
        decision_lines=[]
        if decisions is None
        else [_decision_line(d) for d in decisions.itertuples(index=False)],
    )


def _decision_line(d) -> str:
    """One recorded decision as the PDF prints it (the page's decision log, in words)."""
    offered = (
        f"recommended {formats.option(d.recommended)}"
        if not formats.is_missing(d.recommended)
        else "no option recommended (no clear difference)"
    )
    verb = "accepted" if bool(d.accepted) else "chose"
    reason = "" if formats.is_missing(d.reason) or not str(d.reason).strip() else f": {d.reason}"
    return f"{formats.date(d.decided_at)} {d.actor} {verb} {formats.option(d.chosen)} ({offered}; model {d.model_version}){reason}"


def write_atomically(out: Path, content: bytes) -> None:
    """Write ``content`` to ``out`` through a temporary file in the same folder, renamed over it.

    Why: a reader (a browser download, a mail robot watching the folder) never sees half a PDF,
    and a failure leaves the earlier file as it was. The tumour-board report and the model dossier
    both write this way.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    db_path: Path,
    person_id: int,
    out: Path,
    *,
    include_names: bool = False,
    actor: str = "oncolens",
    role: str | None = None,
    load=None,
) -> dict:
    """Gather, render and write the PDF atomically to ``out``; audit it; return a small summary.

    ``role``: who the report is for (``gather``); without one it carries no recommendation.
    """

    out = Path(out)
    data = gather(
        db_path, person_id, include_names=include_names, generated_by=actor, load=load, role=role
    )
    pdf = render_pdf(data)
    write_atomically(out, pdf)
    digest = hashlib.sha256(pdf).hexdigest()
    audit.record_event(
        db_path,
        actor=actor,
        role=role,
        action="tumour_board_report",
        subject=str(person_id),
        inputs_sha256=digest,
        details={
            "include_names": include_names,
            "for_role": role,
            "recommendation": data.recommendation is not None,
            "pages_sha256": digest,
            "models": dict(data.model_rows),
        },
    )
    return {
        "patient_id": person_id,
        "out": str(out),
        "sha256": digest,
        "bytes": len(pdf),
        "include_names": include_names,
        "renderer": data.renderer,
        "notes": data.notes,
    }


def report_bytes(
    db_path: Path,
    person_id: int,
    *,
    include_names: bool,
    actor: str,
    role: str | None,
    clinic: ClinicModel | None = None,
    forecast=None,
    load=None,
    reads=None,
) -> bytes:
    """The PDF in memory for a download button; audited like ``write_report``.

    ``clinic``, ``forecast``: the app's loaded treatment model and her cached forecast (``gather``);
    ``load``: the app's imaging-model loader (``name -> LoadedModel``, loaded once per process);
    ``reads``: the app's cached reads of the key images (``gather``).
    """

    pdf = render_pdf(
        gather(
            db_path,
            person_id,
            include_names=include_names,
            generated_by=actor,
            clinic=clinic,
            role=role,
            forecast=forecast,
            load=load,
            reads=reads,
        )
    )
    audit.record_event(
        db_path,
        actor=actor,
        role=role,
        action="tumour_board_report",
        subject=str(person_id),
        inputs_sha256=hashlib.sha256(pdf).hexdigest(),
        details={"include_names": include_names, "via": "app", "for_role": role},
    )
    return pdf


__all__ = [
    "SECTIONS",
    "DISCLAIMER",
    "UnknownPatientError",
    "gather",
    "write_report",
    "report_bytes",
]
