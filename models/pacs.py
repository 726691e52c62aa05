"""A hospital PACS over DICOMweb: search (QIDO-RS), retrieve (WADO-RS) and store (STOW-RS).

Why ``dicomweb-client`` and plain HTTP: DICOMweb is what every current PACS
(Orthanc, dcm4chee, Google/Azure/AWS health imaging, vendor archives) speaks,
and it needs no DICOM network association (AE titles, ports opened by the
hospital's firewall team). ``dicomweb-client`` implements the three services
on top of ``requests``; this module adds only configuration, plain errors and
per-instance retrieval.

Credentials never live in code or in the command line (shell history, process
list): ``PacsConfig.resolve`` reads them from Streamlit secrets (``[pacs]``
``url``, ``username``, ``password``) when the app passes them, else from the
environment (``ONCOLENS_PACS_URL``, ``ONCOLENS_PACS_USER``,
``ONCOLENS_PACS_PASSWORD``). A URL given on the command line may replace the
configured URL, never the credentials.

Why instances are retrieved one by one: WADO-RS of a whole study is one
multipart response; one corrupt part would make the whole study fail. Asking
for each instance (its UIDs from QIDO-RS) costs a request per image but lets a
broken instance be reported while its siblings are still read.

Nothing here imports ``streamlit`` or ``analytics``: the app and the CLI call
the same functions (``dashboard/services/pacs_ingest.py`` files what is retrieved).
"""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

ENV_URL = "ONCOLENS_PACS_URL"
ENV_USER = "ONCOLENS_PACS_USER"
ENV_PASSWORD = "ONCOLENS_PACS_PASSWORD"
TIMEOUT_S = (
    5.0,
    60.0,
)  # (connect, read): an unreachable PACS fails in seconds, a slow one may stream
MAX_STUDIES = 200  # one search never lists more; the caller narrows the filters instead
STUDY_FIELDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "PatientID",
    "PatientName",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedInstances",
)


class PacsError(Exception):
    """A PACS operation failed; the message is plain and names no credential."""


class PacsNotConfiguredError(PacsError):
    pass


class PacsUnreachableError(PacsError):
    pass


class PacsAuthError(PacsError):
    pass


class StudyNotFoundError(PacsError):
    pass


class CorruptInstanceError(PacsError):
    pass


@dataclass(frozen=True)
class PacsConfig:
    """Where the PACS is and how to sign in; ``repr`` hides the password."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        secrets: Mapping | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PacsConfig:
        """URL: ``url``, else ``secrets["url"]``, else ``$ONCOLENS_PACS_URL``; credentials from the same source
        order, secrets first. ``secrets`` is the ``[pacs]`` table of Streamlit's secrets (or None)."""
        env = os.environ if environ is None else environ
        sec = dict(secrets or {})
        chosen = (url or sec.get("url") or env.get(ENV_URL) or "").strip()
        if not chosen:
            raise PacsNotConfiguredError(
                f"no PACS configured: set [pacs] url in .streamlit/secrets.toml or ${ENV_URL} "
                "(or give --dicomweb URL)"
            )
        if not chosen.startswith(("http://", "https://")):
            raise PacsNotConfiguredError(
                f"the PACS URL must start with http:// or https:// (got {chosen!r})"
            )
        user = sec.get("username") or env.get(ENV_USER) or None
        password = sec.get("password") or env.get(ENV_PASSWORD) or None
        return cls(url=chosen.rstrip("/"), username=user, password=password)


def connect(config: PacsConfig) -> DICOMwebClient:
    """A client for ``config`` (HTTP basic authentication when a username is set); no request is made yet."""
    session = requests.Session()
    if config.username:
        session.auth = (config.username, config.password or "")
    client = DICOMwebClient(url=config.url, session=session, timeout=TIMEOUT_S)
    client.set_http_retry_params(
        retry=False
    )  # fail fast and plainly; the user retries, not a hidden loop
    return client


def _plain(exc: Exception, what: str, config_url: str) -> PacsError:
    """Translate a requests/dicomweb-client failure into a message a user can act on."""
    if isinstance(exc, PacsError):
        return exc
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):
            return PacsAuthError(
                f"the PACS at {config_url} refused the credentials (HTTP {code}) while {what}; "
                f"check [pacs] username/password or ${ENV_USER}/${ENV_PASSWORD}"
            )
        if code == 404:
            return StudyNotFoundError(f"not found on the PACS (HTTP 404) while {what}")
        return PacsError(f"the PACS answered HTTP {code} while {what}")
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return PacsUnreachableError(
            f"cannot reach the PACS at {config_url} while {what}: {type(exc).__name__}"
        )
    return PacsError(f"{what} failed: {exc}")


def _value(item: dict, keyword: str):
    """The first value of a DICOM JSON attribute (PS3.18 F.2), by keyword; PN as its alphabetic form."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return None
    if len(values) > 1:
        return list(values)
    v = values[0]
    return v.get("Alphabetic") if isinstance(v, dict) else v


def _date_range(date_from: dt.date | None, date_to: dt.date | None) -> str | None:
    if date_from is None and date_to is None:
        return None
    lo = date_from.strftime("%Y%m%d") if date_from else ""
    hi = date_to.strftime("%Y%m%d") if date_to else ""
    return f"{lo}-{hi}" if lo != hi else lo


def search_studies(
    client: DICOMwebClient,
    *,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    modality: str | None = None,
    accession: str | None = None,
    patient_id: str | None = None,
    study_uid: str | None = None,
    limit: int = MAX_STUDIES,
) -> list[dict]:
    """QIDO-RS studies matching every given filter (a date range is inclusive; either end may be open).

    Returns plain dicts with the ``STUDY_FIELDS`` keys (``ModalitiesInStudy`` a list), newest first.
    """
    filters: dict[str, str] = {}
    if (dates := _date_range(date_from, date_to)) is not None:
        filters["StudyDate"] = dates
    for key, value in (
        ("ModalitiesInStudy", modality),
        ("AccessionNumber", accession),
        ("PatientID", patient_id),
        ("StudyInstanceUID", study_uid),
    ):
        if value:
            filters[key] = str(value).strip()
    try:
        found = client.search_for_studies(
            search_filters=filters, fields=list(STUDY_FIELDS), limit=limit
        )
    except Exception as exc:  # noqa: BLE001 - translated to a plain PacsError
        raise _plain(exc, "searching for studies", client.base_url) from exc
    rows = []
    for item in found:
        row = {k: _value(item, k) for k in STUDY_FIELDS}
        mods = row["ModalitiesInStudy"]
        row["ModalitiesInStudy"] = [mods] if isinstance(mods, str) else list(mods or [])
        rows.append(row)
    rows.sort(key=lambda r: (r["StudyDate"] or "", r["StudyTime"] or ""), reverse=True)
    return rows


def list_instances(client: DICOMwebClient, study_uid: str) -> list[tuple[str, str]]:
    """(series UID, SOP instance UID) of every instance of a study; ``StudyNotFoundError`` when it has none."""
    try:
        found = client.search_for_instances(
            study_instance_uid=study_uid,
            fields=["SeriesInstanceUID", "SOPInstanceUID"],
            get_remaining=True,
        )
    except Exception as exc:  # noqa: BLE001
        raise _plain(exc, f"listing study {study_uid}", client.base_url) from exc
    pairs = [(_value(i, "SeriesInstanceUID"), _value(i, "SOPInstanceUID")) for i in found]
    pairs = [(s, o) for s, o in pairs if s and o]
    if not pairs:
        raise StudyNotFoundError(f"study {study_uid} is not on the PACS (or has no instances)")
    return pairs


def retrieve_instance_bytes(
    client: DICOMwebClient, study_uid: str, series_uid: str, sop_uid: str
) -> bytes:
    """WADO-RS of one instance as a DICOM Part 10 file (bytes); a part pydicom cannot parse is
    ``CorruptInstanceError``, so the caller can go on with the study's other instances."""
    try:
        ds = client.retrieve_instance(study_uid, series_uid, sop_uid)
    except requests.exceptions.RequestException as exc:
        raise _plain(exc, f"retrieving instance {sop_uid}", client.base_url) from exc
    except Exception as exc:  # noqa: BLE001 - pydicom failed on the part: the PACS sent something broken
        raise CorruptInstanceError(
            f"instance {sop_uid}: the PACS returned data that is not readable DICOM "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001
        raise CorruptInstanceError(
            f"instance {sop_uid}: cannot be written as a DICOM file ({exc})"
        ) from exc
    return buffer.getvalue()


@dataclass(frozen=True)
class Retrieved:
    """One instance of a retrieval: its bytes, or why it could not be had."""

    study_uid: str
    series_uid: str | None
    sop_uid: str | None
    data: bytes | None = None
    error: str | None = None


def retrieve_study(client: DICOMwebClient, study_uid: str) -> Iterator[Retrieved]:
    """Every instance of a study, one at a time; a study missing on the PACS yields one error entry."""
    try:
        pairs = list_instances(client, study_uid)
    except (PacsAuthError, PacsUnreachableError):
        raise  # nothing else will work either: stop the whole run
    except PacsError as exc:
        yield Retrieved(study_uid, None, None, error=str(exc))
        return
    for series_uid, sop_uid in pairs:
        try:
            yield Retrieved(
                study_uid,
                series_uid,
                sop_uid,
                data=retrieve_instance_bytes(client, study_uid, series_uid, sop_uid),
            )
        except (PacsAuthError, PacsUnreachableError):
            raise
        except PacsError as exc:
            yield Retrieved(study_uid, series_uid, sop_uid, error=str(exc))


def store_datasets(client: DICOMwebClient, datasets: list[Dataset]) -> dict:
    """STOW-RS; returns ``{"stored": [SOP UIDs], "failed": [SOP UIDs]}`` from the PACS's response."""
    if not datasets:
        return {"stored": [], "failed": []}
    study_uid = str(datasets[0].StudyInstanceUID)
    try:
        response = client.store_instances(datasets=datasets, study_instance_uid=study_uid)
    except Exception as exc:  # noqa: BLE001
        raise _plain(exc, "storing results (STOW-RS)", client.base_url) from exc

    def uids(keyword: str) -> list[str]:
        return [
            str(item.ReferencedSOPInstanceUID)
            for item in response.get(keyword, [])
            if "ReferencedSOPInstanceUID" in item
        ]

    return {"stored": uids("ReferencedSOPSequence"), "failed": uids("FailedSOPSequence")}


def check_connection(client: DICOMwebClient) -> None:
    """One cheap QIDO request, so a wrong URL or password is reported before any work is done."""
    try:
        client.search_for_studies(limit=1)
    except Exception as exc:  # noqa: BLE001
        raise _plain(exc, "connecting", client.base_url) from exc
