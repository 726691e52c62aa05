"""FHIR R4 bundles to the import tables, each resource validated by ``fhir.resources``.

Why resource by resource: validating the Bundle as a whole would reject a
hundred good resources for one bad one. Each entry's resource is validated
with its own model class (``fhir.resources.R4B``: R4B is R4 with technical
corrections; the resource types used here are unchanged between them),
and an invalid one is reported with pydantic's reason while the rest import.

Mapping (docs/imports.md has the full table):
Patient -> person (+ outcome_event death from ``deceasedDateTime``), Condition ->
condition_occurrence (tumour characteristics from Observations of the same
patient coded in the OncoLens code system) or outcome_event recurrence,
Observation -> measurement, Procedure and MedicationStatement/MedicationRequest ->
treatment_exposure, ImagingStudy -> imaging_study, EpisodeOfCare -> episode (a disease setting,
a phase of it or a line of therapy: ``type`` codings in two OncoLens code systems, the line number
and why it ended in extensions, ``period`` for its dates; what cannot be mapped is refused with
its reason, never guessed). The observation period is
derived per patient: from the earliest diagnosis to the latest dated resource
(or death), since a bundle carries no enrolment span of its own.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from analytics.imports.errors import ImportFileError

OL = "http://oncolens.org/fhir"  # the OncoLens code system and extensions
CODES = f"{OL}/CodeSystem/oncolens"
EXT_MENOPAUSE = f"{OL}/StructureDefinition/menopausal-status"
EXT_SITE = f"{OL}/StructureDefinition/site"
EXT_LINE = f"{OL}/StructureDefinition/line-of-therapy"
EXT_REGIMEN = f"{OL}/StructureDefinition/regimen"
EXT_CLASS = f"{OL}/StructureDefinition/treatment-class"
EXT_END_REASON = f"{OL}/StructureDefinition/episode-end-reason"
EXT_DETAIL = f"{OL}/StructureDefinition/episode-detail"
SETTING_CODES = f"{OL}/CodeSystem/disease-setting"  # early, metastatic
KIND_CODES = f"{OL}/CodeSystem/episode-kind"  # analytics.episodes.KINDS
# EpisodeOfCare.status: an episode she went through (or is in) is imported; the others are not
EPISODE_STATUS = {"active", "onhold", "finished"}
SNOMED = "http://snomed.info/sct"
LATERALITY = {"7771000": "left", "24028007": "right", "left": "left", "right": "right"}
TUMOUR_CODES = (
    "stage",
    "grade",
    "tumour_size_mm",
    "positive_nodes",
    "er_fmol",
    "pr_fmol",
    "er_positive",
    "pr_positive",
    "her2_positive",
)
RESOURCES = (
    "Patient",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationStatement",
    "MedicationRequest",
    "ImagingStudy",
    "EpisodeOfCare",
)


class _Reject(Exception):
    pass


def _ext(resource, url: str):
    for e in resource.extension or []:
        if e.url == url:
            for attr in (
                "valueCode",
                "valueString",
                "valueInteger",
                "valuePositiveInt",
                "valueBoolean",
            ):
                v = getattr(e, attr, None)
                if v is not None:
                    return v
    return None


def _code(concept, system: str | None = None) -> str | None:
    """The first coding's code (of ``system`` if given), else the concept's text."""
    if concept is None:
        return None
    for c in concept.coding or []:
        if system is None or c.system == system:
            return c.code
    return concept.text


def _day(value) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value)
    return dt.date.fromisoformat(text[:10]) if len(text) >= 10 else None


def _iso(d: dt.date | None) -> str | None:
    return d.isoformat() if d else None


def _episode_row(res) -> dict:
    """One EpisodeOfCare as an episode row (text, validated later like a CSV row); ``_Reject`` with
    the reason when it cannot be mapped (docs/imports.md, "EpisodeOfCare")."""
    if res.status not in EPISODE_STATUS:
        raise _Reject(
            f"EpisodeOfCare with status {res.status} is not imported (only "
            f"{', '.join(sorted(EPISODE_STATUS))}: an episode she went through or is in)"
        )
    setting = next(
        (_code(t, SETTING_CODES) for t in res.type or [] if _code(t, SETTING_CODES)), None
    )
    kind = next((_code(t, KIND_CODES) for t in res.type or [] if _code(t, KIND_CODES)), None)
    missing = [
        f"a type coding of {system} ({what})"
        for value, system, what in (
            (setting, SETTING_CODES, "the disease setting"),
            (kind, KIND_CODES, "the kind of episode"),
        )
        if value is None
    ]
    if missing:
        raise _Reject("EpisodeOfCare needs " + " and ".join(missing))
    period = res.period
    start = _day(period.start) if period else None
    end = _day(period.end) if period else None
    if start is None:
        raise _Reject("EpisodeOfCare needs period.start (when the episode began)")
    if res.status == "finished" and end is None:
        raise _Reject("a finished EpisodeOfCare needs period.end (when it ended)")
    if res.status != "finished" and end is not None:
        raise _Reject(
            f"EpisodeOfCare is {res.status} but has period.end: give status finished, or no end"
        )
    line = _ext(res, EXT_LINE)
    return {
        "setting": setting,
        "kind": kind,
        "line_number": None if line is None else str(line),
        "start_date": _iso(start),
        "end_date": _iso(end),
        "end_reason": _ext(res, EXT_END_REASON),
        "detail": _ext(res, EXT_DETAIL),
    }


def bundle_frames(bundle: dict) -> tuple[dict[str, pd.DataFrame], list[tuple[str, str, str]]]:
    """Rows per import table (as text, validated later like CSV rows) and (origin, table, reason) rejections."""
    from fhir.resources.R4B import get_fhir_model_class  # lazy: pydantic models take ~1 s to import

    # lazy: fhir is imported only when this is used (start-up time)
    from fhir.resources.R4B.condition import Condition

    # lazy: fhir is imported only when this is used (start-up time)
    from fhir.resources.R4B.episodeofcare import EpisodeOfCare

    # lazy: fhir is imported only when this is used (start-up time)
    from fhir.resources.R4B.imagingstudy import ImagingStudy

    # lazy: fhir is imported only when this is used (start-up time)
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    # lazy: fhir is imported only when this is used (start-up time)
    from fhir.resources.R4B.medicationstatement import MedicationStatement

    # lazy: fhir is imported only when this is used (start-up time)
    from fhir.resources.R4B.observation import Observation

    # lazy: fhir is imported only when this is used (start-up time)
    from fhir.resources.R4B.patient import Patient

    # lazy: fhir is imported only when this is used (start-up time)
    from fhir.resources.R4B.procedure import Procedure

    # lazy: pydantic is imported only when this is used (start-up time)
    from pydantic import ValidationError

    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ImportFileError("the JSON is not a FHIR Bundle (resourceType must be 'Bundle')")
    rows: dict[str, list[dict]] = {}
    rejected: list[tuple[str, str, str]] = []
    parsed = []
    for i, entry in enumerate(bundle.get("entry") or [], start=1):
        raw = (entry or {}).get("resource") or {}
        rtype = raw.get("resourceType", "?")
        origin = f"entry {i} ({rtype}/{raw.get('id', '?')})"
        if rtype not in RESOURCES:
            rejected.append((origin, "fhir", f"resource type {rtype} is not imported"))
            continue
        try:
            res = get_fhir_model_class(rtype).model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ()))
            rejected.append(
                (
                    origin,
                    "fhir",
                    f"invalid {rtype}: {where}: {first.get('msg')}"
                    + (f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""),
                )
            )
            continue
        parsed.append((origin, entry.get("fullUrl"), res))

    # patients first: references resolve to their MRN
    mrn_of: dict[str, str] = {}
    for origin, full_url, res in parsed:
        if not isinstance(res, Patient):
            continue
        mrn = next((i.value for i in res.identifier or [] if _code(i.type) == "MR"), None) or next(
            (i.value for i in res.identifier or []), None
        )
        if mrn is None:
            rejected.append((origin, "person", "Patient has no identifier to use as MRN"))
            continue
        for ref in (f"Patient/{res.id}", full_url):
            if ref:
                mrn_of[ref] = mrn
        name = res.name[0] if res.name else None
        site = _ext(res, EXT_SITE) or (
            res.managingOrganization.display if res.managingOrganization else None
        )
        rows.setdefault("person", []).append(
            {
                "_origin": origin,
                "mrn": mrn,
                # a given name may be null with only an extension (FHIR's _given): skip it
                "given_name": " ".join(g for g in name.given or [] if g) if name else None,
                "family_name": name.family if name else None,
                "birth_date": _iso(_day(res.birthDate)),
                "sex": {"female": "F", "male": "M"}.get(res.gender or "", res.gender),
                "site": site,
                "menopausal_status": _ext(res, EXT_MENOPAUSE),
            }
        )
        if res.deceasedDateTime is not None:
            rows.setdefault("outcome_event", []).append(
                {
                    "_origin": origin,
                    "mrn": mrn,
                    "event_type": "death",
                    "event_date": _iso(_day(res.deceasedDateTime)),
                }
            )

    def patient(origin: str, res, table: str) -> str | None:
        # EpisodeOfCare names her in ``patient``, the others in ``subject``
        subject = getattr(res, "subject", None) or getattr(res, "patient", None)
        ref = subject.reference if subject else None
        mrn = mrn_of.get(ref or "")
        if mrn is None and subject is not None and subject.identifier is not None:
            mrn = subject.identifier.value
        if mrn is None:
            rejected.append(
                (origin, table, f"subject {ref or '(none)'} is not a Patient of this bundle")
            )
        return mrn

    tumour: dict[str, dict] = {}  # mrn -> tumour characteristics from Observations
    dates: dict[str, list[dt.date]] = {}
    for origin, _url, res in parsed:
        if isinstance(res, Observation):
            mrn = patient(origin, res, "measurement")
            if mrn is None:
                continue
            code = _code(res.code, CODES) or _code(res.code)
            when = _day(
                res.effectiveDateTime
                or (res.effectivePeriod.start if res.effectivePeriod else None)
            )
            if code in TUMOUR_CODES:
                value = next(
                    (
                        v
                        for v in (
                            res.valueQuantity.value if res.valueQuantity else None,
                            res.valueInteger,
                            res.valueBoolean,
                            _code(res.valueCodeableConcept),
                            res.valueString,
                        )
                        if v is not None
                    ),
                    None,
                )
                tumour.setdefault(mrn, {})[code] = value
                continue
            if res.valueQuantity is None:
                rejected.append((origin, "measurement", "Observation has no valueQuantity"))
                continue
            dates.setdefault(mrn, []).append(when) if when else None
            rows.setdefault("measurement", []).append(
                {
                    "_origin": origin,
                    "mrn": mrn,
                    "measurement_date": _iso(when),
                    "concept": code,
                    "value": res.valueQuantity.value,
                    "unit": res.valueQuantity.unit or res.valueQuantity.code,
                    "study_uid": None,
                }
            )
    for origin, _url, res in parsed:
        if isinstance(res, Condition):
            mrn = patient(origin, res, "condition_occurrence")
            if mrn is None:
                continue
            onset = _day(res.onsetDateTime or res.recordedDate)
            if _code(res.code, CODES) == "recurrence":
                rows.setdefault("outcome_event", []).append(
                    {
                        "_origin": origin,
                        "mrn": mrn,
                        "event_type": "recurrence",
                        "event_date": _iso(onset),
                    }
                )
                dates.setdefault(mrn, []).append(onset) if onset else None
                continue
            t = tumour.get(mrn, {})
            stage = _code(res.stage[0].summary) if res.stage else t.get("stage")
            side = _code(res.bodySite[0] if res.bodySite else None)
            rows.setdefault("condition_occurrence", []).append(
                {
                    "_origin": origin,
                    "mrn": mrn,
                    "condition": _code(res.code, CODES)
                    or (
                        "breast_cancer"
                        if _code(res.code, SNOMED) == "254837009"
                        else _code(res.code)
                    ),
                    "diagnosis_date": _iso(onset),
                    "laterality": LATERALITY.get(str(side).lower() if side else "", side),
                    "stage": stage,
                    **{k: t.get(k) for k in TUMOUR_CODES if k != "stage"},
                }
            )
            dates.setdefault(mrn, []).append(onset) if onset else None
        elif isinstance(res, Procedure | MedicationStatement | MedicationRequest):
            mrn = patient(origin, res, "treatment_exposure")
            if mrn is None:
                continue
            if isinstance(res, Procedure):
                period = res.performedPeriod
                start = _day(period.start if period else res.performedDateTime)
                end = _day(period.end) if period else start
                agent = _code(res.code)
                kind = "procedure"
            elif isinstance(res, MedicationStatement):
                period = res.effectivePeriod
                start = _day(period.start if period else res.effectiveDateTime)
                end = _day(period.end) if period else None
                agent = _code(res.medicationCodeableConcept)
                kind = "drug"
            else:
                period = res.dispenseRequest.validityPeriod if res.dispenseRequest else None
                start = _day(period.start if period else res.authoredOn)
                end = _day(period.end) if period else None
                agent = _code(res.medicationCodeableConcept)
                kind = "drug"
            rows.setdefault("treatment_exposure", []).append(
                {
                    "_origin": origin,
                    "mrn": mrn,
                    "exposure_type": kind,
                    "treatment_class": _ext(res, EXT_CLASS),
                    "agent": agent,
                    "line_of_therapy": _ext(res, EXT_LINE) or 1,
                    "regimen": _ext(res, EXT_REGIMEN),
                    "start_date": _iso(start),
                    "end_date": _iso(end),
                }
            )
            for d in (start, end):
                dates.setdefault(mrn, []).append(d) if d else None
        elif isinstance(res, ImagingStudy):
            mrn = patient(origin, res, "imaging_study")
            if mrn is None:
                continue
            uid = next(
                (
                    i.value.removeprefix("urn:oid:")
                    for i in res.identifier or []
                    if i.system == "urn:dicom:uid" and i.value  # a value may be absent
                ),
                None,
            )
            when = _day(res.started)
            rows.setdefault("imaging_study", []).append(
                {
                    "_origin": origin,
                    "study_uid": uid,
                    "mrn": mrn,
                    "study_date": _iso(when),
                    "modality": res.modality[0].code if res.modality else None,
                    "description": res.description,
                    "accession_number": None,
                }
            )
            dates.setdefault(mrn, []).append(when) if when else None
        elif isinstance(res, EpisodeOfCare):
            mrn = patient(origin, res, "episode")
            if mrn is None:
                continue
            try:
                row = _episode_row(res)
            except _Reject as exc:
                rejected.append((origin, "episode", str(exc)))
                continue
            rows.setdefault("episode", []).append({"_origin": origin, "mrn": mrn, **row})
            for key in ("start_date", "end_date"):
                if row[key]:
                    dates.setdefault(mrn, []).append(dt.date.fromisoformat(row[key]))

    # observation period per patient with a diagnosis: earliest diagnosis to latest date (or death)
    deaths = {
        r["mrn"]: r["event_date"]
        for r in rows.get("outcome_event", [])
        if r["event_type"] == "death"
    }
    for r in rows.get("condition_occurrence", []):
        mrn = r["mrn"]
        starts = [
            c["diagnosis_date"]
            for c in rows["condition_occurrence"]
            if c["mrn"] == mrn and c["diagnosis_date"]
        ]
        if not starts or any(p["mrn"] == mrn for p in rows.get("observation_period", [])):
            continue
        last = max([d.isoformat() for d in dates.get(mrn, [])] + starts)
        end = deaths.get(mrn) or last
        rows.setdefault("observation_period", []).append(
            {
                "_origin": f"derived for MRN {mrn}",
                "mrn": mrn,
                "start_date": min(starts),
                "end_date": max(end, min(starts)),
                "end_reason": "death" if mrn in deaths else "data_cutoff",
            }
        )
    frames = {
        t: pd.DataFrame(r)
        .astype(object)
        .where(lambda d: d.notna(), None)
        .map(lambda v: None if v is None else str(v).lower() if isinstance(v, bool) else str(v))
        .assign(_origin=[x["_origin"] for x in r])
        for t, r in rows.items()
    }
    return frames, rejected
