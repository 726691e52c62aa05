"""Store access and caching for the pages: the only module that uses st.cache_data / st.cache_resource.

Why caching keys look the way they do. The store is a DuckDB file that nobody
holds open (``analytics.store.open_store``), and a CLI process may rewrite it
while the app runs, so every cached result must be keyed on the file's state:

1. ``stamp``: the file's ``(mtime_ns, size)`` and those of its write-ahead log.
   Any write changes it, including the audit events the app itself writes when
   someone opens a patient. Results that include the audit trail (the
   Governance page) are keyed on the stamp directly.
2. ``version``: a fingerprint of the *clinical* content (row counts of every
   table except ``NOT_CLINICAL_TABLES``, the ``clinic_metadata`` rows, the schema
   version, and the ethics board's sign-off state: the setting and the decisions, which decide
   the AI measurements a record or a forecast may read), computed once per stamp. Clinical results (patient records, the
   worklist, cohort curves) are keyed on it, so opening a patient, which writes
   an audit event and so changes the stamp (as does recording a treatment
   decision, also left out of the fingerprint), does not throw away a cohort
   overview that took seconds to compute; a CLI import, a rebuilt demo
   (new seed in ``clinic_metadata``) or a migration does.

Functions take a ``StoreRef`` (path + stamp + version), call one library
function inside a short-lived read-only connection, and return its plain
result. No connection is ever held; ``st.cache_resource`` holds only the
imaging models (loaded once per process, verified by sha256 when loaded).
Images are cached on the sha256 of their bytes, not on a path, so a file
replaced on disk is read again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from analytics import episodes, patients, store
from analytics.cohorts import summary as cohort_summary
from analytics.governance import audit
from analytics.governance.board import AuditFilterOptions, DecisionRates
from analytics.governance.lifecycle import measurements as ai_measurements
from analytics.imaging import queries as imaging_queries
from analytics.imaging import volumes as imaging_volumes
from analytics.treatment import decisions as treatment_decisions
from analytics.treatment import scope as treatment_scope
from analytics.treatment import similar as treatment_similar
from analytics.treatment.model import files as treatment_model_files
from analytics.worklist import stored as worklist_store

if TYPE_CHECKING:  # imported where used (below): torch, pydicom, scipy take seconds to import
    from analytics.forecast import patient as forecast
    from analytics.treatment import clinic as treatment_clinic
    from analytics.treatment.recommend import Recommendation  # (SciPy through the model)
    from analytics.worklist import ranking as worklist  # (SciPy through the forecasts)
    from models.dicom import reader as dicom
    from models.inference import read as inference
    from models.inference import registry
    from models.saliency import methods as saliency

_log = logging.getLogger("oncolens.resources")

# Reads wait this long for a CLI writer to finish before the page says so.
READ_WAIT_S = 10.0
# Written while the app runs (page views, clinicians' decisions) and not clinical content:
# left out of the data version, so a click does not evict every cached clinical result.
NOT_CLINICAL_TABLES = ("audit_event", "treatment_decision", "saved_cohort")


@dataclass(frozen=True)
class StoreRef:
    """A readable store at one moment: what cached functions are keyed on."""

    path: str
    stamp: tuple[int, ...]
    version: str


@dataclass(frozen=True)
class StoreStatus:
    """What the Home page says about the store; ``problem`` and ``fix`` are set when it is unusable."""

    path: Path
    ref: StoreRef | None = None
    problem: str | None = None
    fix: str | None = None
    patients: int | None = None
    schema_version: int | None = None
    metadata: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return self.ref is not None

    def metadata_value(self, key: str, default: str = "unknown") -> str:
        return dict(self.metadata).get(key, default)


@dataclass(frozen=True, eq=False)
class GovernanceSnapshot:
    """What the Governance page shows; ``audit_events`` newest first."""

    schema_version: int
    table_counts: pd.DataFrame  # table, rows
    metadata: pd.DataFrame  # key, value
    audit_events: pd.DataFrame


def _import_each(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the page that needs it raises it again, in its own run
            _log.warning("warm-up: %s not imported (%s)", name, type(exc).__name__)


# What the saliency maps and the tumour-board PDF import on first use and the pages do not import
# at the top: Captum (with it matplotlib.pyplot, ~0.5-1 CPU-s) and the report's sign-off lookups.
SALIENCY_IMPORTS = ("captum.attr", "dashboard.services.lifecycle")


@dataclass(frozen=True, eq=False)
class WarmUp:
    """The server's background warm-up: the pages' imports, then what the server loads once.

    ``imports`` is what every page but Home joins (``join``); ``server`` runs after it and is never
    joined: a page that needs one of its objects before it is ready waits for that object alone,
    on the cache's own lock (Streamlit computes a cached value once, whoever asks first).
    ``done`` lists the steps finished, in order (the server log and the tests read it).
    """

    imports: threading.Thread
    server: threading.Thread
    done: list[str]

    def join(self, timeout: float | None = None) -> None:
        """Wait for the pages' imports (not for the server's objects)."""
        self.imports.join(timeout)


def _warm_server(imports: threading.Thread, db: Path, done: list[str]) -> None:
    """After the imports: the store's treatment model, the saliency path's imports, the imaging
    models and the PDF's kept browser, each into the cache the pages read (same keys).

    Files only, never a store connection: a read connection held here would make the first
    page's audit write wait for it and fail closed (``warm_up``). Each step that fails is left to
    the page that needs it, which says why in its own run.
    """
    imports.join()
    steps: tuple[tuple[str, Callable[[], bool]], ...] = (
        ("treatment model", lambda: _model_stamp_for(str(db)) is not None),
        ("saliency imports", lambda: _import_each(SALIENCY_IMPORTS) is None),
        ("imaging models", _warm_imaging_models),
        ("PDF browser", _warm_pdf_browser),
    )
    for name, step in steps:
        try:
            loaded = step()
        except Exception as exc:  # noqa: BLE001 - the page that needs it raises it again
            _log.warning("warm-up: %s not loaded (%s)", name, type(exc).__name__)
            continue
        done.append(name if loaded else f"{name}: none")


def _warm_imaging_models() -> bool:
    from models.inference import registry  # lazy: imported by the warm-up's first thread

    names = registry.available_models()
    for name in names:
        imaging_model(name)
    return bool(names)


def _warm_pdf_browser() -> bool:
    # lazy: imported by the warm-up's first thread (the pages' modules)
    from dashboard.figures import static as static_figures

    return static_figures.keep_warm()  # False: no kaleido here, matplotlib draws the figures


@st.cache_resource(show_spinner=False)
def _warm_up(modules: tuple[str, ...], db: str) -> WarmUp:
    imports = threading.Thread(
        target=_import_each, args=(modules,), name="oncolens-warm-up", daemon=True
    )
    done: list[str] = []
    server = threading.Thread(
        target=_warm_server,
        args=(imports, Path(db), done),
        name="oncolens-warm-server",
        daemon=True,
    )
    imports.start()
    server.start()
    return WarmUp(imports, server, done)


def warm_up(modules: tuple[str, ...]) -> WarmUp:
    """Import ``modules`` once per server process, in a background thread, then load what the
    server keeps (``_warm_server``) in a second one; ``join`` waits for the imports.

    Why (issue 23): the pages need torch, ONNX Runtime, SciPy, pydicom and Plotly, whose imports
    take seconds on two cores. Importing them in the first page's script run made the cold sign-in
    page wait for all of them; here they load while the sign-in form is on screen and the user
    types. A page that needs them joins the import thread first (``app.py``), so no module is
    imported by a page's module code and this thread at once. Then the second thread loads the
    store's treatment model (2-2.5 CPU-s: the first Patient page paid it), Captum and the imaging
    models (the first saliency map and the first PDF paid them) and starts the PDF's kept browser;
    a page reaches these only from functions at run time, where Python's per-module import locks
    make it wait for a module this thread is importing, never see half of it. No cached result
    of the store is computed here: one (the forecast prior, say) would hold a read connection for
    seconds, and the first page's audit write, which needs the file to itself, would fail closed
    waiting for it (seen in bench_pages).
    """
    return _warm_up(tuple(modules), str(db_path()))


def db_path() -> Path:
    """The store the app serves: ``$ONCOLENS_DB`` (``oncolens serve --db`` sets it), else the default."""
    return store.default_db_path()


def file_stamp(path: Path) -> tuple[int, ...] | None:
    """``(mtime_ns, size)`` of the file and of its WAL (zeros when absent); None when the file is missing."""
    try:
        main = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        wal = path.with_name(path.name + ".wal").stat()
        wal_stamp = (wal.st_mtime_ns, wal.st_size)
    except FileNotFoundError:
        wal_stamp = (0, 0)
    return (main.st_mtime_ns, main.st_size, *wal_stamp)


@st.cache_data(max_entries=8, show_spinner=False)
def _inspect(path: str, stamp: tuple[int, ...]) -> dict:
    """Counts, metadata and schema version of the store in this state (``stamp`` is the key only)."""
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        counts = store.table_counts(con)
        version = store.schema_version(con)
        metadata = con.execute("SELECT key, value FROM clinic_metadata ORDER BY key").fetchall()
        # a decision is an audit event and a setting change keeps the row count: both change
        # which AI measurements the clinical results may read (docs/governance.md)
        signoff = ai_measurements.fingerprint(con)
    clinical = {name: n for name, n in counts.items() if name not in NOT_CLINICAL_TABLES}
    fingerprint = json.dumps([version, sorted(clinical.items()), metadata, signoff], default=str)
    return {
        "counts": counts,
        "schema_version": version,
        "metadata": tuple((str(k), str(v)) for k, v in metadata),
        "version": hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
    }


def _fix_for(path: Path, exc: store.StoreError) -> str:
    if isinstance(exc, store.MissingDatabaseError):
        return f"oncolens demo --db {path}"
    if isinstance(exc, store.NotADatabaseError):
        return f"oncolens demo --db {path} --force   # replaces the file with a new demo clinic"
    if isinstance(exc, store.StoreBusyError):
        return "# wait for the import or batch job to finish, then reload this page"
    return f"oncolens demo --db {path}"


def store_status(path: Path | None = None) -> StoreStatus:
    """Inspect the store without stopping the page (the Home page shows problems as advice)."""
    path = Path(path) if path is not None else db_path()
    stamp = file_stamp(path)
    try:
        if stamp is None:
            # Let the store phrase the message, so the app and the CLI say the same thing.
            store.connect(path, read_only=True).close()
        info = _inspect(str(path), stamp)
    except store.StoreError as exc:
        return StoreStatus(path=path, problem=str(exc), fix=_fix_for(path, exc))
    ref = StoreRef(path=str(path), stamp=stamp, version=info["version"])
    return StoreStatus(
        path=path,
        ref=ref,
        patients=int(info["counts"].get("person", 0)),
        schema_version=int(info["schema_version"]),
        metadata=info["metadata"],
    )


def show_store_problem(status: StoreStatus) -> None:
    """The error a page shows when the store cannot be used, with the command that fixes it."""
    st.error(
        f"**The OncoLens database cannot be opened.** {status.problem}\n\n"
        "Create the demo clinic with the command below, or point `ONCOLENS_DB` "
        "(`oncolens serve --db PATH`) at an existing store."
    )
    st.code(status.fix or f"oncolens demo --db {status.path}", language="bash")


def require_store() -> StoreRef:
    """The store for this run; on a missing, foreign or busy file, show the fix and stop the page."""
    status = store_status()
    if status.ref is None:
        show_store_problem(status)
        st.stop()
    return status.ref


@contextmanager
def working(label: str, *, expanded: bool = False) -> Iterator[Any]:
    """A status box ("running…") while long work runs; gone once it is done, whatever happened.

    For the work users wait on: cohort-wide SHAP, the worklist ranking, subgroup
    audits, batch reads. The box yields its container, so a caller can put an
    ``st.progress`` bar in it (``expanded=True``) and advance it. Anything drawn
    inside goes with the box: compute inside, draw after. The cached functions
    called inside show no spinner of their own, and never write to the box (a
    cached function that wrote outside itself could not be replayed).
    """
    slot = st.empty()
    try:
        with slot.status(label, expanded=expanded) as box:
            yield box
    finally:
        slot.empty()


@st.cache_data(max_entries=4, show_spinner=False)
def _demo_accounts(path: str, accounts: str) -> list[tuple[str, str, str]]:
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.governance import users

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return users.demo_accounts_in_use(con)


def demo_accounts(status: StoreStatus) -> list[tuple[str, str, str]]:
    """(username, role, password) of the demo accounts that still have their published password (the sign-in
    page lists them); none for a store that cannot be read. Checked once per state of the accounts.

    Keyed on the accounts' rows, not the file's stamp (issue 23): every page view writes an audit
    event and so changed the stamp, and each sign-in page then verified four Argon2 hashes again
    (deliberately slow: seconds on two busy cores) for an answer that had not changed.
    """
    if status.ref is None:
        return []
    try:
        with store.open_store(status.ref.path, read_only=True, wait_s=READ_WAIT_S) as con:
            rows = con.execute(
                "SELECT username, role, password_hash FROM app_user ORDER BY username"
            ).fetchall()
        accounts = hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()
        return _demo_accounts(status.ref.path, accounts)
    except store.StoreError:
        return []


# --- clinical results: keyed on the clinical fingerprint ------------------------------------


@st.cache_data(max_entries=256, show_spinner=False)
def _search(path: str, version: str, text: str, limit: int) -> pd.DataFrame:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return patients.search_patients(con, text, limit)


def search_patients(ref: StoreRef, text: str, limit: int = 20) -> pd.DataFrame:
    """Matches for the sidebar picker (id or MRN prefix), at most ``limit``."""
    return _search(ref.path, ref.version, text.strip(), limit)


@st.cache_data(max_entries=64, show_spinner=False)
def _patient(path: str, version: str, person_id: int) -> patients.PatientSummary:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return patients.patient_summary(con, person_id)


def patient_summary(ref: StoreRef, person_id: int) -> patients.PatientSummary:
    """The patient's record; raises ``patients.UnknownPatientError`` (not cached) for unknown ids."""
    return _patient(ref.path, ref.version, int(person_id))


@st.cache_data(max_entries=256, show_spinner=False)
def _care(
    path: str, version: str, person_id: int
) -> tuple[episodes.CareSetting, treatment_scope.Scope]:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        setting = episodes.care_setting(con, person_id)
        return setting, treatment_scope.recommendation_scope(con, person_id, setting)


def care(ref: StoreRef, person_id: int) -> tuple[episodes.CareSetting, treatment_scope.Scope]:
    """Where the patient is (``analytics.episodes.care_setting``) and whether the treatment model applies
    (``analytics.treatment.clinic.recommendation_scope``, as ``oncolens recommend`` and the report)."""
    return _care(ref.path, ref.version, int(person_id))


@st.cache_data(max_entries=64, show_spinner=False)
def _episodes(path: str, version: str, person_id: int) -> pd.DataFrame:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return episodes.episodes_frame(con, person_id)


def patient_episodes(ref: StoreRef, person_id: int) -> pd.DataFrame:
    """The patient's episodes in course order (``analytics.episodes.episodes_frame``)."""
    return _episodes(ref.path, ref.version, int(person_id))


@st.cache_data(max_entries=64, show_spinner=False)
def _line_risk(path: str, version: str, person_id: int) -> episodes.LineProgressionRisk | None:
    setting, _ = _care(path, version, person_id)
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return episodes.line_progression_risk(con, setting)


def line_risk(ref: StoreRef, person_id: int) -> episodes.LineProgressionRisk | None:
    """Progression on her current metastatic line as this clinic saw it; None off a line."""
    return _line_risk(ref.path, ref.version, int(person_id))


@st.cache_data(max_entries=4, show_spinner=False)
def _recent_studies(path: str, version: str, limit: int) -> pd.DataFrame:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return patients.recent_imaging_studies(con, limit)


def recent_imaging_studies(ref: StoreRef, limit: int = 50) -> pd.DataFrame:
    """The clinic's newest studies, for the Imaging page without a patient."""
    return _recent_studies(ref.path, ref.version, limit)


# --- the worklist: the stored ranking (analytics.worklist.stored), on the fly when stale and small ----

# A stale stored worklist is replaced by ranking on the fly up to this many patients in the store
# (about 0.3 ms per patient, cached per data and model version); above, the stored rows are shown
# under a warning with a refresh, never silently.
ON_THE_FLY_MAX_PATIENTS = 20_000


@dataclass(frozen=True, eq=False)
class WorklistView:
    """What the Worklist page shows: one page, whether it is current, and where it came from.

    ``source``: "stored" (current), "on_the_fly" (stored rows stale, ranked now instead),
    "stale" (stored rows out of date, shown with ``status.reasons``), "missing" (never ranked).
    """

    page: worklist.WorklistPage
    status: worklist_store.WorklistStatus
    source: str
    # the treatment model version whose risks these rows carry: the stored ranking's, or the current
    # model's when ranked on the fly (the ethics board's sign-off is checked against this one)
    ranked_by: str | None = None


@st.cache_data(max_entries=4, show_spinner="Ranking the worklist by forecast risk…")
def _worklist(path: str, version: str, model_stamp: tuple[int, ...] | None) -> pd.DataFrame:
    clinic = (
        _treatment_model(str(treatment_model_files.model_dir_for(Path(path))), model_stamp)
        if model_stamp
        else None
    )
    # lazy: SciPy, through the forecasts, kept off the sign-in page (issue 23)
    from analytics.worklist import ranking as worklist

    prior, _stored = _forecast_prior(path, version)
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return worklist.ranked(con, prior=prior, clinic=clinic)


@st.cache_data(max_entries=8, show_spinner=False)
def _worklist_status(
    path: str, stamp: tuple[int, ...], model_version: str | None
) -> worklist_store.WorklistStatus:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return worklist_store.status(con, model_version)


@st.cache_data(max_entries=64, show_spinner=False)
def _stored_page(
    path: str,
    stamp: tuple[int, ...],
    computed_at,
    limit: int,
    offset: int,
    filters: tuple,
) -> worklist.WorklistPage:
    """Keyed on the file stamp: a review moves a patient between buckets without touching the ranking."""
    only_progression, site, hide_reviewed, bucket, signoff = filters
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return worklist_store.read_page(
            con,
            limit,
            offset,
            only_progression,
            site,
            hide_reviewed=hide_reviewed,
            bucket=bucket,
            signoff=signoff,
        )


@st.cache_data(max_entries=16, show_spinner=False)
def _live_page(
    path: str,
    stamp: tuple[int, ...],
    ranked: pd.DataFrame,
    limit: int,
    offset: int,
    filters: tuple,
) -> worklist.WorklistPage:
    """The buckets over a ranking computed now (``buckets.read_frame_page``): the same SQL as stored."""
    # lazy: only the Worklist page needs it; the app opens its first page without it
    from analytics.worklist import buckets as worklist_buckets

    only_progression, site, hide_reviewed, bucket, signoff = filters
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return worklist_buckets.read_frame_page(
            con,
            ranked,
            worklist_store.as_of_date(con),
            limit,
            offset,
            only_progression=only_progression,
            site=site,
            hide_reviewed=hide_reviewed,
            bucket=bucket,
            signoff=signoff,
        )


def _model_version_of(ref: StoreRef) -> str | None:
    stamp = _model_stamp_of(ref)
    return (
        None
        if stamp is None
        else _treatment_model(
            str(treatment_model_files.model_dir_for(Path(ref.path))), stamp
        ).version
    )


def worklist_view(
    ref: StoreRef,
    limit: int,
    offset: int,
    only_progression: bool = False,
    site: str | None = None,
    *,
    hide_reviewed: bool = False,
    bucket: str | None = None,
) -> WorklistView:
    """One page of the worklist in buckets: the stored rows when current, else see ``WorklistView``.

    Status is keyed on the file stamp (a refresh may keep every row count); pages on the file
    stamp too (a review changes the buckets), the refresh time and the sign-off (``worklist_signoff``:
    reads of unapproved imaging versions and a withheld forecast, issue 22).
    """
    status = _worklist_status(ref.path, ref.stamp, _model_version_of(ref))
    base = (bool(only_progression), site or None, bool(hide_reviewed), bucket)
    if status.fresh or (status.entries and status.patients > ON_THE_FLY_MAX_PATIENTS):
        filters = (*base, worklist_signoff(ref, status.model_version))
        page = _stored_page(
            ref.path, ref.stamp, status.computed_at, int(limit), int(offset), filters
        )
        return WorklistView(
            page, status, "stored" if status.fresh else "stale", status.model_version
        )
    if status.patients <= ON_THE_FLY_MAX_PATIENTS:
        ranked = _worklist(ref.path, ref.version, _model_stamp_of(ref))
        filters = (*base, worklist_signoff(ref, _model_version_of(ref)))
        page = _live_page(ref.path, ref.stamp, ranked, int(limit), int(offset), filters)
        return WorklistView(page, status, "on_the_fly", _model_version_of(ref))
    # lazy: SciPy, through the forecasts, kept off the sign-in page (issue 23)
    from analytics.worklist import ranking as worklist

    empty = worklist.WorklistPage(
        pd.DataFrame(columns=list(worklist.WORKLIST_COLUMNS)), 0, int(limit), int(offset)
    )
    return WorklistView(empty, status, "missing")


def with_review_changes(ref: StoreRef, rows: pd.DataFrame) -> pd.DataFrame:
    """A worklist page's rows with what changed since each patient's last review.

    Cached on the file stamp (any write, a review included, changes it), so a rerun of the
    page (a filter, a row selection) does not repeat the three lookups.
    """
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.worklist import review as worklist_review

    if rows.empty:
        return rows.assign(
            **{
                c: pd.Series(dtype=object)
                for c in (*worklist_review.CHANGE_COLUMNS[1:], "new_progression")
            }
        )
    signoff = worklist_signoff(ref, _model_version_of(ref))  # new AI reads: approved ones only
    return _with_review_changes(ref.path, ref.stamp, rows, signoff)


@st.cache_data(max_entries=16, show_spinner=False)
def _with_review_changes(
    path: str, stamp: tuple[int, ...], rows: pd.DataFrame, signoff
) -> pd.DataFrame:
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.worklist import review as worklist_review

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return worklist_review.with_changes(con, rows, signoff)


def last_review(ref: StoreRef, person_id: int):
    """(reviewed_at, reviewed_by) of the patient's latest worklist review, or None (cached on the file stamp)."""
    return _last_review(ref.path, ref.stamp, int(person_id))


@st.cache_data(max_entries=64, show_spinner=False)
def _last_review(path: str, stamp: tuple[int, ...], person_id: int):
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.worklist import review as worklist_review

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return worklist_review.last_review(con, person_id)


def mark_reviewed(
    ref: StoreRef,
    person_id: int,
    actor: str,
    role: str | None,
    *,
    note: str | None = None,
    assignee: str | None = None,
):
    """Record a worklist review (row + chained audit event); raises ``StoreError`` when the store is
    busy and ``review.ReviewError`` for a note or assignee it refuses."""
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.worklist import review as worklist_review

    with store.open_store(ref.path, wait_s=READ_WAIT_S) as con:
        return worklist_review.mark_reviewed(
            con, person_id, actor, role, note=note, assignee=assignee
        )


def last_look(db: str | Path, person_id: int, username: str, before=None):
    """When ``username`` last viewed or reviewed the patient (audit trail) before ``before``, None if
    never. Not cached: read once per visit by ``state.last_look``."""
    # lazy: only the Patient page needs it; the app opens its first page without it
    from analytics.worklist import changes as record_changes

    with store.open_store(db, read_only=True, wait_s=READ_WAIT_S) as con:
        return record_changes.last_look(con, person_id, username, before)


def changes_since(ref: StoreRef, person_id: int, since):
    """Her record's changes since ``since`` (``analytics.worklist.changes``), cached on the file stamp."""
    return _changes_since(ref.path, ref.stamp, int(person_id), since)


@st.cache_data(max_entries=32, show_spinner=False)
def _changes_since(path: str, stamp: tuple[int, ...], person_id: int, since):
    # lazy: only the Patient page needs it; the app opens its first page without it
    from analytics.worklist import changes as record_changes
    from analytics.worklist import stored as worklist_store  # lazy: as above

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return record_changes.since_last_look(con, person_id, since, worklist_store.as_of_date(con))


def assignable_users(ref: StoreRef) -> list[str]:
    """Accounts a patient can be assigned to (cached on the file stamp)."""
    return _assignable(ref.path, ref.stamp)


@st.cache_data(max_entries=4, show_spinner=False)
def _assignable(path: str, stamp: tuple[int, ...]) -> list[str]:
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.worklist import review as worklist_review

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return worklist_review.assignable(con)


def refresh_worklist(ref: StoreRef) -> worklist_store.RefreshResult:
    """Rank the stored worklist again in full, with the model the app uses (one write transaction).

    Under the write lock from the start (``read_only_ranking=False``): a read-only instance in the
    app's process would make its own audit writes wait for the whole ranking, while one read-write
    instance is shared by every session. Other processes wait for it (minutes at a million
    patients; ``oncolens worklist --refresh`` ranks without blocking readers). Raises
    ``StoreBusyError`` when another writer holds the store.
    """
    stamp = _model_stamp_of(ref)
    clinic = (
        _treatment_model(str(treatment_model_files.model_dir_for(Path(ref.path))), stamp)
        if stamp
        else None
    )
    return worklist_store.refresh_store(
        ref.path, clinic, wait_s=READ_WAIT_S, read_only_ranking=False
    )


# --- figures: built once per distinct inputs ------------------------------------------------


@st.cache_resource(max_entries=64, show_spinner=False)
def _figure(name: str, args: tuple, kwargs: dict, _build: Callable[..., Any]) -> Any:
    return _build(*args, **kwargs)


def figure(build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``build(*args, **kwargs)``, a Plotly figure builder of ``dashboard.figures``, built once per
    distinct inputs and shared by every later run with equal inputs.

    Why (issue 23): on a return to a page every other result comes from a cache, and the figures
    were what each rerun still rebuilt: the Patient page's timeline (~110 CPU-ms) and lab figure
    (~40 CPU-ms), against ~20 and ~3 ms for hashing their inputs. Keyed on the inputs themselves
    (Streamlit hashes the records, frames and dataclasses passed), never on a caller's summary of
    them, so equal inputs are the only way to get the same figure. ``cache_resource``: a figure
    would be re-validated when unpickled (as long as building it); it is shared, not copied, so a
    caller must not change it (``st.plotly_chart`` only reads it).
    """
    return _figure(f"{build.__module__}.{build.__qualname__}", args, kwargs, build)


# --- forecasts: the cohort's tumour-growth prior, one patient's forecast ----------------------


def _model_stamp_of(ref: StoreRef) -> tuple[int, ...] | None:
    """The treatment model's file stamp, or None when the store has no usable model files."""
    return _model_stamp_for(ref.path)


def _model_stamp_for(path: str) -> tuple[int, ...] | None:
    """``_model_stamp_of`` by the store's path (the warm-up has no ``StoreRef``: it opens no store);
    loads the model into its cache as a side effect, as the pages' first call did."""
    folder = treatment_model_files.model_dir_for(Path(path))
    stamp = _treatment_model_stamp(folder)
    if stamp is None:
        return None
    try:
        _treatment_model(str(folder), stamp)
    except treatment_model_files.TreatmentModelError:
        return None
    return stamp


PRIOR_ESTIMATING = (
    "Estimating the cohort's tumour-growth prior: none is stored for the records as they are now "
    "(about half a minute; the worklist refresh stores it)…"
)


@st.cache_data(max_entries=4, show_spinner=False)
def _forecast_prior(path: str, version: str) -> tuple[forecast.TGIPrior, bool]:
    """(the prior, whether it was stored): the worklist refresh's stored prior when current.

    Why (issue 23): fitting it here made the first patient page wait 20-30 s on two cores; the
    worklist refresh (``oncolens demo``, ``oncolens worklist --refresh``) stores it, keyed on what
    it was estimated from (``worklist_store.stored_prior``), and the page only reads it. When none
    is current (records changed since, a store from before schema 15) it is estimated here, as
    before, under a spinner that says why, and the forecast panel says so too.
    """
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        prior = worklist_store.stored_prior(con)
        if prior is not None:
            return prior, True
        from analytics.forecast import patient as forecast  # lazy: slow import

        with st.spinner(PRIOR_ESTIMATING):
            return forecast.estimate_prior(con), False


def forecast_prior_stored(ref: StoreRef) -> bool:
    """Whether the forecasts of this data version use the stored prior (False: the app fitted it)."""
    return _forecast_prior(ref.path, ref.version)[1]


@st.cache_data(max_entries=128, show_spinner="Forecasting…")
def _forecast(path: str, version: str, model_stamp: tuple[int, ...] | None, person_id: int):
    from analytics.forecast import patient as forecast  # lazy: slow import

    clinic = (
        _treatment_model(str(treatment_model_files.model_dir_for(Path(path))), model_stamp)
        if model_stamp
        else None
    )
    prior, _stored = _forecast_prior(path, version)
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return forecast.patient_forecast(con, person_id, prior, clinic)


def patient_forecast(ref: StoreRef, person_id: int) -> forecast.PatientForecast:
    """``oncolens forecast --json`` of one patient (same code), cached per data and model version.

    Raises ``forecast.ForecastError`` or ``forecast.UnknownPatientError`` (not cached).
    """
    return _forecast(ref.path, ref.version, _model_stamp_of(ref), int(person_id))


@st.cache_data(max_entries=4, show_spinner=False)
def _sites(path: str, version: str) -> list[str]:
    # lazy: SciPy, through the forecasts, kept off the sign-in page (issue 23)
    from analytics.worklist import ranking as worklist

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return worklist.sites(con)


def sites(ref: StoreRef) -> list[str]:
    """Treating clinics, for the worklist's site filter."""
    return _sites(ref.path, ref.version)


@st.cache_data(max_entries=4, show_spinner="Summarising the cohort…")
def _cohort(path: str, version: str) -> cohort_summary.CohortOverview:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return cohort_summary.cohort_overview(con)


def cohort_overview(ref: StoreRef) -> cohort_summary.CohortOverview:
    """Counts, distributions and KM curves; seconds at a million patients, so cached per data version."""
    return _cohort(ref.path, ref.version)


def _definition_key(query: Any, group_by: str | None) -> str:
    """A cohort query as the cache key: the definition's canonical JSON (filters are one group)."""
    # lazy: only the Cohorts page needs it; the app opens its first page without it
    from analytics.cohorts.definition import as_definition

    return as_definition(query, group_by).canonical()


def _definition_of(key: str):
    # lazy: only the Cohorts page needs it; the app opens its first page without it
    from analytics.cohorts.definition import CohortDefinition

    return CohortDefinition.from_json(key)


@st.cache_data(max_entries=32, show_spinner="Building the cohort…")
def _cohort_built(path: str, version: str, definition: str):
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.cohorts import builder as cohorts

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return cohorts.build_cohort(con, _definition_of(definition))


def cohort_result(ref: StoreRef, query: Any, group_by: str | None = None):
    """The cohort builder's result (``analytics.cohorts.builder.build_cohort``), cached per data version and query.

    ``query``: a ``CohortDefinition`` or a tuple of filters (one group). Raises ``CohortError``
    (not cached) for a bad filter or an empty cohort.
    """
    return _cohort_built(ref.path, ref.version, _definition_key(query, group_by))


@st.cache_data(max_entries=8, show_spinner=False)
def _at_risk(path: str, version: str, group_by: str | None) -> pd.DataFrame:
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.cohorts import builder as cohorts

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return cohorts.build_cohort(con, (), group_by, with_table1=False, with_tests=False).at_risk


def cohort_at_risk(ref: StoreRef, group_by: str | None = None) -> pd.DataFrame:
    """The whole clinic's numbers at risk per year (``CohortResult.at_risk``), by ``group_by``.

    The same counts as ``cohort_result(ref, (), group_by).at_risk``, without the Table 1 and the
    survival tests the Overview tab does not show (two thirds of the builder's time, issue 23).
    """
    return _at_risk(ref.path, ref.version, group_by)


@st.cache_data(max_entries=4, show_spinner="Preparing the export…")
def _cohort_rows(path: str, version: str, definition: str) -> pd.DataFrame:
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.cohorts import builder as cohorts

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return cohorts.cohort_patients(con, _definition_of(definition))


def cohort_rows(ref: StoreRef, query: Any, group_by: str | None = None) -> pd.DataFrame:
    """One row per patient of the cohort (no names, MRN or birth date), for CSV / Parquet export."""
    return _cohort_rows(ref.path, ref.version, _definition_key(query, group_by))


@st.cache_data(max_entries=8, show_spinner="Listing the cohort's patients…")
def _cohort_members(path: str, version: str, definition: str, identified: bool):
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.cohorts import members

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return members.cohort_members(con, _definition_of(definition), identified=identified)


def cohort_members(ref: StoreRef, query: Any, identified: bool):
    """The cohort's patient list (``analytics.cohorts.members``): ids and MRN, or pseudonyms and months."""
    return _cohort_members(ref.path, ref.version, _definition_key(query, None), identified)


def saved_cohorts(ref: StoreRef) -> list:
    """Saved cohorts, newest first (not cached: a few rows, and a save must show at once).

    Raises ``SavedCohortsUnavailable`` on a store not yet migrated to the table.
    """
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.cohorts import saved

    with store.open_store(ref.path, read_only=True, wait_s=READ_WAIT_S) as con:
        return saved.list_saved(con)


def saved_cohort(ref: StoreRef, cohort_id: str):
    """One saved cohort by the id of a link (``?cohort=ID``); raises ``CohortError`` subclasses."""
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.cohorts import saved

    with store.open_store(ref.path, read_only=True, wait_s=READ_WAIT_S) as con:
        return saved.get_saved(con, cohort_id)


# --- governance: keyed on the file stamp, because it shows the audit trail -------------------


@st.cache_data(max_entries=4, show_spinner=False)
def _governance(path: str, stamp: tuple[int, ...], audit_limit: int) -> GovernanceSnapshot:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        counts = store.table_counts(con)
        version = store.schema_version(con)
        metadata = con.execute("SELECT key, value FROM clinic_metadata ORDER BY key").df()
        events = audit.recent_events(con, audit_limit)
    table = pd.DataFrame({"table": list(counts), "rows": list(counts.values())})
    return GovernanceSnapshot(version, table, metadata, events)


def governance_snapshot(ref: StoreRef, audit_limit: int = 50) -> GovernanceSnapshot:
    """Schema, counts, provenance and the newest audit events; refreshed on every write."""
    return _governance(ref.path, ref.stamp, audit_limit)


# --- imaging --------------------------------------------------------------------


def _offered(con, images: pd.DataFrame) -> pd.DataFrame:
    """``imaging_queries.offered``: each volume series once. A series with a 3D read on record is
    a volume (ingest decided it by the same rule); the headers of the other series of 3 or more
    files are scanned (``models.volumes.series.volume_files``: a CT series no 3D model reads)."""
    # lazy: the series scan (pydicom headers) only where a list of images is built
    from models.volumes.series import MIN_SLICES, volume_files

    if images.empty:
        return imaging_queries.offered(images, set())
    sizes = images.groupby("series_uid")["file_path"].count()
    candidates = [str(uid) for uid, n in sizes.items() if n >= MIN_SLICES]
    volumes = imaging_queries.series_read_in_3d(con, candidates)
    rest = images[images["series_uid"].isin(set(candidates) - volumes)]
    if not rest.empty:
        found = volume_files(Path(f) for f in rest["file_path"])
        stacked = {str(f) for files in found.values() for f in files}
        volumes |= set(rest.loc[rest["file_path"].isin(stacked), "series_uid"])
    return imaging_queries.offered(images, volumes)


@st.cache_data(max_entries=16, show_spinner=False)
def _patient_images(path: str, version: str, person_id: int) -> pd.DataFrame:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return _offered(con, imaging_queries.patient_images(con, person_id))


def patient_images(ref: StoreRef, person_id: int) -> pd.DataFrame:
    """The patient's images with a file on record and their latest stored AI finding, each series
    that is a volume once (``is_volume``, ``images``: docs/volumes.md, "Which series is a volume")."""
    return _patient_images(ref.path, ref.version, int(person_id))


@st.cache_data(max_entries=16, show_spinner=False)
def _volume_reads(path: str, version: str, person_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return (
            imaging_volumes.patient_volume_reads(con, person_id),
            imaging_volumes.patient_volume_lesions(con, person_id),
        )


def volume_reads(ref: StoreRef, person_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Her 3D reads and their lesions, tracked across time points (``analytics.imaging.volumes``)."""
    return _volume_reads(ref.path, ref.version, int(person_id))


@dataclass(frozen=True, eq=False)
class SeriesView:
    """One of her series rebuilt from its files and read again by the 3D model, for the viewer:
    ``volume`` (``models.volumes.Volume``), ``read`` (``VolumeRead``) and ``bundle``; or ``error``."""

    volume: Any = None
    read: Any = None
    bundle: Any = None
    error: str | None = None
    note: str | None = None  # a volume shown without a 3D read: why there is none


@st.cache_resource(max_entries=4, show_spinner=False)
def _series_view(
    path: str,
    version: str,
    person_id: int,
    series_uid: str,
    model: str | None,
    sha256: str | None,
    _bundle: Any,
) -> SeriesView:
    # lazy: the volume reader and MONAI only where a series is shown in 3D
    from models.volumes import read_volumes
    from models.volumes.segment import read_volume  # lazy: as above

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        files = imaging_queries.series_files(con, person_id, series_uid)
    if not files:
        return SeriesView(error="no file of this series is on record any more")
    present = [Path(f) for f in files if Path(f).is_file()]
    if len(present) < len(files):
        # a volume rebuilt from some of its slices is not the series that was read: no read of it
        return SeriesView(
            error=f"{len(files) - len(present)} of the series' {len(files)} files are missing "
            "from the image folder, so it cannot be shown as the volume that was read"
        )
    found = read_volumes(present)
    if not found.volumes:
        why = found.failures[0].error if found.failures else "its files are missing or unreadable"
        return SeriesView(error=f"the series cannot be rebuilt as a volume: {why}")
    volume = found.volumes[0]
    if _bundle is None:
        return SeriesView(volume, note=_why_no_read(volume.modality))
    return SeriesView(volume, read_volume(volume, _bundle), _bundle)


def _why_no_read(modality: str) -> str:
    """Why a volume has no 3D read on record, in the words of the model choice."""
    # lazy: the bundles only where a series is shown in 3D
    from models.volumes.bundle import BundleError, bundle_for
    from models.volumes.segment import NoModelForVolumeError  # lazy: as above

    try:
        bundle = bundle_for(modality)
    except (NoModelForVolumeError, BundleError) as exc:
        return str(exc)
    return (
        f"no 3D read of it is on record (it was filed without one); {bundle.name} reads "
        f"{modality} volumes: ingest the series again to read it"
    )


def series_view(ref: StoreRef, person_id: int, series_uid: str, model: str | None) -> SeriesView:
    """Her series ``series_uid`` as a volume with ``model``'s read (the same read as ingest and
    ``oncolens predict``), cached per series and weights: about 1 s the first time. ``model``
    None: the volume alone, with the reason it has no read (``note``)."""
    # lazy: the bundles' module only where a 3D read is shown
    from models.volumes.bundle import BundleError, load_bundle

    if model is None:
        return _series_view(
            ref.path, ref.version, int(person_id), str(series_uid), None, None, None
        )
    try:
        bundle = load_bundle(model)
    except BundleError as exc:
        return SeriesView(error=f"the 3D model {model} cannot be loaded: {exc}")
    return _series_view(
        ref.path, ref.version, int(person_id), str(series_uid), model, bundle.sha256, bundle
    )


@st.cache_resource(max_entries=8, show_spinner=False)
def _series_saliency(
    path: str, version: str, series_uid: str, sha256: str, method: str, _view: SeriesView
) -> tuple[dict, Any]:
    # lazy: Captum and the 3D saliency only where a map is asked for
    from models.saliency.volume import explain_series

    return explain_series(_view.volume, _view.bundle, method)


def series_saliency(ref: StoreRef, view: SeriesView, method: str = "gradcam") -> tuple[dict, Any]:
    """``explain_series`` of a shown series (the code of ``oncolens explain SERIES_DIR``): its
    JSON object and the ``VolumeExplanation`` (None when refused), cached per series + weights."""
    # keyed like the view itself (store version included): files replaced under the same series
    # UID get a new map, never the old one over the new volume
    return _series_saliency(
        ref.path, ref.version, view.volume.series_instance_uid, view.bundle.sha256, method, view
    )


# --- an upload of several files or a zip on the Imaging page (issue 21 item 1) ----------------


@st.cache_resource(max_entries=2, show_spinner=False)
def _upload_contents(store_path: str, digest: str, _items: tuple) -> Any:
    # lazy: pydicom, the de-identifier and the volume reader only where an upload is opened
    from models.deid import deidentify as deid
    from models.volumes.uploads import read_upload  # lazy: as above

    key = deid.load_or_create_key(deid.key_path_for_store(store_path))
    return read_upload(_items, key)


def upload_contents(store_path: str, digest: str, items: tuple) -> Any:
    """``models.volumes.uploads.read_upload`` of an upload's files (``sources.collect``'s items),
    de-identified with the store's key: once per upload (``digest``: the hash of its files), so a
    rerun (a click on the saliency button) neither de-identifies nor stacks it again. Only the
    de-identified result is kept; the raw bytes are not part of the key and are not held."""
    return _upload_contents(str(store_path), digest, items)


@st.cache_resource(max_entries=2, show_spinner=False)
def _upload_view(
    digest: str, series_uid: str, model: str, sha256: str, _volume: Any, _bundle: Any
) -> SeriesView:
    from models.volumes.segment import read_volume  # lazy: MONAI only where a volume is read

    return SeriesView(_volume, read_volume(_volume, _bundle), _bundle)


def upload_view(digest: str, volume: Any) -> SeriesView:
    """An uploaded volume with the 3D read of its modality's model (the one ``oncolens predict``
    picks: the built-in for MR, else the first registered bundle), cached per upload, series and
    weights; a volume no 3D model reads comes back without a read and says why (``note``)."""
    # lazy: the bundles' module only where a 3D read is shown
    from models.volumes.bundle import BundleError, bundle_for
    from models.volumes.segment import NoModelForVolumeError  # lazy: as above

    try:
        bundle = bundle_for(volume.modality)
        return _upload_view(
            digest, volume.series_instance_uid, bundle.name, bundle.sha256, volume, bundle
        )
    except NoModelForVolumeError as exc:  # no model for its modality, or an oblique stack
        return SeriesView(volume, note=str(exc))
    except BundleError as exc:
        return SeriesView(error=f"the 3D model cannot be loaded: {exc}")


@st.cache_resource(max_entries=4, show_spinner=False)
def _upload_saliency(
    digest: str, series_uid: str, sha256: str, method: str, _view: SeriesView
) -> tuple[dict, Any]:
    # lazy: Captum and the 3D saliency only where a map is asked for
    from models.saliency.volume import explain_series

    return explain_series(_view.volume, _view.bundle, method)


def upload_saliency(digest: str, view: SeriesView, method: str = "gradcam") -> tuple[dict, Any]:
    """``series_saliency`` for an uploaded volume: keyed on the upload, not on the store (an
    upload's series UID may equal a stored one's, its files need not)."""
    return _upload_saliency(
        digest, view.volume.series_instance_uid, view.bundle.sha256, method, view
    )


def volume_model_card(name: str) -> dict:
    """The card of a 3D model (its ``docs/card.json``, with ``docs/saliency.json`` as its saliency
    section), read without loading the network; {} when the bundle cannot be found or read.
    Cached on the card files' stamps, so a retrained or re-measured model shows without a restart."""
    # lazy: JSON only, no torch (models.volumes.cards)
    from models.volumes.cards import SALIENCY_FILE, BundleError, find_bundle

    try:
        root = find_bundle(name)
    except BundleError:
        return {}
    stamps = tuple(file_stamp(root / part) for part in ("docs/card.json", SALIENCY_FILE))
    return _volume_model_card(str(root), stamps)


@st.cache_data(max_entries=8, show_spinner=False)
def _volume_model_card(root: str, stamps: tuple) -> dict:
    from models.volumes.cards import BundleError, read_card  # lazy: as above

    try:
        return read_card(Path(root))
    except (BundleError, OSError, ValueError):
        return {}


def patient_identity(ref: StoreRef, person_id: int) -> dict[str, str | None]:
    """The identifiers an upload is checked against; not cached (identifiers stay out of caches)."""
    with store.open_store(ref.path, read_only=True, wait_s=READ_WAIT_S) as con:
        return imaging_queries.patient_identity(con, person_id)


@st.cache_data(max_entries=4, show_spinner=False)
def _recent_images(path: str, version: str, limit: int) -> pd.DataFrame:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return _offered(con, imaging_queries.recent_images(con, limit)).head(limit)


def recent_images(ref: StoreRef, limit: int = 30) -> pd.DataFrame:
    """The clinic's ``limit`` most recent images or volume series (as ``patient_images``)."""
    return _recent_images(ref.path, ref.version, limit)


@st.cache_resource(show_spinner="Loading the imaging model…")
def _model(name: str, weights_stamp: tuple[int, ...] | None) -> registry.LoadedModel:
    from models.inference import registry  # lazy: slow import

    return registry.load_model(name)


def imaging_model(name: str) -> registry.LoadedModel:
    """A verified model, loaded once per process (reloaded if its weights file changes)."""
    from models.inference import registry  # lazy: slow import

    weights, _ = registry.find_model_files(name)
    return _model(name, file_stamp(weights))


@st.cache_data(max_entries=32, show_spinner=False)
def _read(digest: str, _data: bytes, frame: int) -> dicom.DicomImage:
    from models.dicom import reader as dicom  # lazy: slow import

    return dicom.read_dicom(_data, frame=frame)


def read_image(data: bytes, frame: int = 0) -> dicom.DicomImage:
    """Decode one frame; raises ``dicom.DicomReadError`` (not cached) with a plain message.

    Keyed on the bytes' sha256 only: the bytes themselves are left out of the key (``_data``),
    which Streamlit would otherwise hash a second time on every call (issue 23)."""
    return _read(hashlib.sha256(data).hexdigest(), data, int(frame))


@st.cache_data(max_entries=32, show_spinner="Running the AI read…")
def _ai_read(
    digest: str, frame: int, model_name: str, weights_stamp: tuple[int, ...] | None, _image
) -> inference.AIRead:
    from models.inference import read as inference  # lazy: slow import

    return inference.read_image(imaging_model(model_name), _image)


def ai_read(data: bytes, frame: int, image: dicom.DicomImage, model_name: str) -> inference.AIRead:
    """The AI read of one decoded frame, cached per image bytes, frame and model weights.

    ``model_name``: the model ``models.inference.tasks.choose_model`` picked for this image
    (the page may know more of the image than its file, e.g. the study description the
    store kept for a de-identified copy, so the choice is the caller's, not re-made here).
    """
    from models.inference import registry  # lazy: slow import

    weights, _ = registry.find_model_files(model_name)
    return _ai_read(
        hashlib.sha256(data).hexdigest(), int(frame), model_name, file_stamp(weights), image
    )


# --- treatment options: the clinic's model, one patient's recommendation, decisions -----------


def _treatment_model_stamp(folder: Path) -> tuple[int, ...] | None:
    weights, card = treatment_model_files.model_paths(folder)
    weights_stamp, card_stamp = file_stamp(weights), file_stamp(card)
    return None if weights_stamp is None or card_stamp is None else (*weights_stamp, *card_stamp)


@st.cache_resource(max_entries=2, show_spinner="Loading the treatment model…")
def _treatment_model(folder: str, stamp: tuple[int, ...]) -> treatment_clinic.ClinicModel:
    from analytics.treatment import clinic as treatment_clinic  # lazy: slow import

    return treatment_clinic.load_clinic_model(Path(folder), folder=Path(folder), stack_refits=True)


def treatment_model(ref: StoreRef) -> treatment_clinic.ClinicModel:
    """The store's clinic model, verified and loaded once per process (again when its files change).

    Raises ``TreatmentModelError`` when there is none or it does not match its card.
    """
    folder = treatment_model_files.model_dir_for(Path(ref.path))
    stamp = _treatment_model_stamp(folder)
    if stamp is None:
        treatment_model_files.load_model(folder)  # raises, saying what is missing
    return _treatment_model(str(folder), stamp)


@st.cache_data(max_entries=256, show_spinner="Predicting each option…")
def _recommendation(
    path: str,
    version: str,
    folder: str,
    model_stamp: tuple[int, ...],
    person_id: int,
    _clinic: treatment_clinic.ClinicModel,
) -> Recommendation:
    from analytics.treatment import clinic as treatment_clinic  # lazy: slow import

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return treatment_clinic.recommendation_for(_clinic, con, person_id)


def recommendation(ref: StoreRef, person_id: int) -> Recommendation:
    """``analytics.treatment.clinic.recommendation_for`` (as ``oncolens recommend`` and the report) with
    the process's model (``treatment_model``); only the result is cached, per data and model version.

    Raises ``TreatmentModelError``, or ``MissingCovariatesError`` or ``UnknownPatientError``
    (``analytics.treatment.clinic_data``); errors are not cached.
    """
    folder = treatment_model_files.model_dir_for(Path(ref.path))
    stamp = _treatment_model_stamp(folder)
    if stamp is None:
        treatment_model_files.load_model(folder)  # raises, saying what is missing
    clinic = _treatment_model(str(folder), stamp)
    return _recommendation(ref.path, ref.version, str(folder), stamp, int(person_id), clinic)


@st.cache_data(max_entries=2, show_spinner=False)  # the page shows a status box (``working``)
def _cohort_explanation(path: str, version: str, folder: str, model_stamp: tuple[int, ...]):
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.treatment.cohort import explain_cohort

    clinic = _treatment_model(folder, model_stamp)
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return explain_cohort(clinic, con)


def cohort_explanation(ref: StoreRef):
    """Recommendations and SHAP of the benefit over the clinic (``analytics.treatment.cohort``), cached.

    Raises ``TreatmentModelError`` (no model) or ``TreatmentDataError`` (too few patients).
    """
    folder = treatment_model_files.model_dir_for(Path(ref.path))
    stamp = _treatment_model_stamp(folder)
    if stamp is None:
        treatment_model_files.load_model(folder)  # raises, saying what is missing
    return _cohort_explanation(ref.path, ref.version, str(folder), stamp)


@st.cache_data(max_entries=64, show_spinner=False)
def _similar(path: str, version: str, person_id: int) -> treatment_similar.SimilarPatients:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return treatment_similar.similar_patients(con, person_id)


def similar_patients(ref: StoreRef, person_id: int) -> treatment_similar.SimilarPatients:
    """Kaplan-Meier by first-line option of patients with her stage and ER status."""
    return _similar(ref.path, ref.version, int(person_id))


@st.cache_data(max_entries=64, show_spinner=False)
def _decisions(path: str, stamp: tuple[int, ...], person_id: int) -> pd.DataFrame:
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return treatment_decisions.patient_decisions(con, person_id)


def treatment_decision_history(ref: StoreRef, person_id: int) -> pd.DataFrame:
    """The patient's recorded decisions, newest first; keyed on the file stamp (decisions are not clinical)."""
    return _decisions(ref.path, ref.stamp, int(person_id))


# --- saliency: explanations keyed on image content, model version and weights, method, parameters ----


@st.cache_data(max_entries=64, show_spinner="Computing the saliency map…")
def _explanation(
    digest: str,
    frame: int,
    model_name: str,
    model_version: str,
    weights_stamp: tuple[int, ...] | None,
    method: str,
    params_key: str,
    target: int | str | None,
    _image,
    _params,
) -> saliency.Explanation:
    from models.saliency import methods as saliency  # lazy: slow import

    return saliency.explain_image(imaging_model(model_name), _image, method, target, _params)


def explanation(
    data: bytes,
    frame: int,
    image: dicom.DicomImage,
    model_name: str,
    method: str,
    target: int | str | None = None,
    params: saliency.SaliencyParams | None = None,
) -> saliency.Explanation:
    """The saliency map of one decoded frame, computed once per image bytes + frame, model version and
    weights file, method, the parameters that method uses, and target; a rerun reuses it.

    Raises ``saliency.SaliencyError`` (unknown method, target out of range) or
    ``registry.ModelUnavailableError``; errors are not cached.
    """
    from models.inference import registry  # lazy: slow import
    from models.saliency import methods as saliency  # (the same)

    saliency.check_method(method)
    params = params or saliency.SaliencyParams()
    weights, _ = registry.find_model_files(model_name)
    version = imaging_model(model_name).version
    key = json.dumps(params.for_method(method), sort_keys=True)
    return _explanation(
        hashlib.sha256(data).hexdigest(),
        int(frame),
        model_name,
        version,
        file_stamp(weights),
        method,
        key,
        target,
        image,
        params,
    )


@st.cache_data(max_entries=8, show_spinner=False)
def _saliency_card(model_name: str, card_stamp: tuple[int, ...] | None) -> dict | None:
    from models.inference import registry  # lazy: slow import

    return registry.load_card(model_name).get("saliency")


def saliency_quality(model_name: str) -> dict | None:
    """The model card's saliency figures (``python -m models.saliency.quality --write-cards``), or None."""
    from models.inference import registry  # lazy: slow import

    _, card = registry.find_model_files(model_name)
    return _saliency_card(model_name, file_stamp(card))


# --- governance: model cards, subgroup audits, audit trail, decisions (Part B of the governance issue) ---


def model_cards() -> list[dict]:
    """Every imaging model's card (verified weights are not needed to read a card)."""
    from models.inference import registry  # lazy: slow import

    cards = []
    for name in registry.available_models():
        _, card_path = registry.find_model_files(name)
        cards.append(_card(name, file_stamp(card_path)))
    return cards


def volume_cards() -> list[dict]:
    """Every 3D model bundle's card (``models.volumes.cards``: JSON only, no torch, no weights
    loaded; a few small files, read fresh so a bundle registered by the CLI shows at once)."""
    # lazy: only the Governance page's model cards need it
    from models.volumes.cards import bundle_cards

    return bundle_cards()


@st.cache_data(max_entries=8, show_spinner=False)
def _card(name: str, card_stamp: tuple[int, ...] | None) -> dict:
    from models.inference import registry  # lazy: slow import

    return registry.load_card(name)


def treatment_card(ref: StoreRef) -> dict:
    """The clinic model's card; raises ``TreatmentModelError`` when the store has none."""
    folder = treatment_model_files.model_dir_for(Path(ref.path))
    return treatment_model_files.load_card(folder)


@st.cache_data(max_entries=2, show_spinner=False)  # the page shows a status box (``working``)
def _treatment_subgroups(
    path: str, version: str, folder: str, model_stamp: tuple[int, ...], threshold: float
) -> dict:
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.governance.subgroup_treatment import treatment_subgroup_report
    from analytics.treatment.clinic import ClinicModel  # lazy: slow import (xgboost, SHAP)

    # risks only (issue 23): the audit reads ``model.rfs_5y``, the same numbers without the stacked
    # refits and the SHAP explainers that ``_treatment_model`` prepares for the Patient page
    # (1.3 of the tab's 5 CPU-s when the ethics board opened it first)
    model, card = treatment_model_files.load_model(Path(folder))
    clinic = ClinicModel(model, card, None, Path(folder))
    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return treatment_subgroup_report(con, clinic, threshold=threshold)


def treatment_subgroups(ref: StoreRef, threshold: float = 0.40) -> dict:
    """``oncolens validate subgroups`` (treatment part) for this store, cached per data and model version."""
    folder = treatment_model_files.model_dir_for(Path(ref.path))
    stamp = _treatment_model_stamp(folder)
    if stamp is None:
        treatment_model_files.load_model(folder)  # raises, saying what is missing
    return _treatment_subgroups(ref.path, ref.version, str(folder), stamp, float(threshold))


@st.cache_data(max_entries=8, show_spinner=False)  # the page shows a status box with a progress bar
def _imaging_subgroups(name: str, weights_stamp: tuple[int, ...] | None, n: int, seed: int) -> dict:
    # lazy: only this section needs it; the app opens its first page without it
    from dashboard.services.subgroups import imaging_subgroup_report

    return imaging_subgroup_report(imaging_model(name), n=n, seed=seed)


def imaging_subgroups(name: str, n: int = 200, seed: int = 20_261_125) -> dict:
    """``oncolens validate subgroups`` (one imaging model) on ``n`` fresh phantoms, cached per weights."""
    from models.inference import registry  # lazy: slow import

    weights, _ = registry.find_model_files(name)
    return _imaging_subgroups(name, file_stamp(weights), int(n), int(seed))


@st.cache_data(max_entries=16, show_spinner=False)
def _audit_trail(
    path: str,
    stamp: tuple[int, ...],
    actions: tuple[str, ...],
    actors: tuple[str, ...],
    since,
    until,
) -> tuple[pd.DataFrame, AuditFilterOptions]:
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.governance import board as governance

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        options = governance.audit_filter_options(con)
        events = governance.audit_events(
            con, actions=list(actions), actors=list(actors), since=since, until=until
        )
    return events, options


def audit_trail(
    ref: StoreRef, actions=(), actors=(), since=None, until=None
) -> tuple[pd.DataFrame, AuditFilterOptions]:
    """Filtered audit events (newest first) and the filter options; refreshed on every write."""
    return _audit_trail(ref.path, ref.stamp, tuple(actions), tuple(actors), since, until)


@st.cache_data(max_entries=4, show_spinner=False)
def _decision_rates(path: str, stamp: tuple[int, ...]) -> DecisionRates:
    # lazy: only this section needs it; the app opens its first page without it
    from analytics.governance import board as governance

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return governance.decision_rates(con)


def decision_rates(ref: StoreRef) -> DecisionRates:
    """Accept / override counts of treatment recommendations (``analytics.governance.board.decision_rates``)."""
    return _decision_rates(ref.path, ref.stamp)


# --- data quality and accounts (Governance, issue 22) ------------------------------------------


@st.cache_data(max_entries=4, show_spinner=False)
def _data_quality(path: str, version: str, asked: float) -> list:
    # lazy: only the Governance page's data-quality tab needs it
    from analytics.governance import quality

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return quality.run_checks(con, sample=0)


def data_quality(ref: StoreRef, asked: float = 0.0) -> list:
    """Every data-quality check's result (``quality.CheckResult``).

    Keyed on the clinical version, not the stamp: every page view writes an audit event, and the
    checks read every row of the fact table (seconds on a large store). An edit in place that
    changes no row count keeps the version; ``asked`` (the time of the tab's "Run the checks
    again") runs them anew.
    """
    return _data_quality(ref.path, ref.version, float(asked))


@st.cache_data(max_entries=16, show_spinner=False)
def _quality_rows(path: str, version: str, asked: float, name: str, limit: int) -> pd.DataFrame:
    # lazy: only the Governance page's data-quality tab needs it
    from analytics.governance import quality

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return quality.failing_rows(con, name, limit=limit)


def quality_failing_rows(
    ref: StoreRef, name: str, asked: float = 0.0, limit: int = 500
) -> pd.DataFrame:
    """The failing rows of one check: pseudonymised patient, row key, detail (keyed as ``data_quality``)."""
    return _quality_rows(ref.path, ref.version, float(asked), name, int(limit))


def accounts(ref: StoreRef) -> list:
    """Every account (``users.User``), read fresh: the admin's changes show on the next run."""
    # lazy: only the admin's Users tab needs it
    from analytics.governance import users

    with store.open_store(ref.path, read_only=True, wait_s=READ_WAIT_S) as con:
        return users.list_users(con)


# --- reporting checklists and dossiers (Governance, issue 22 items 1-2) -------------------------


def governed_models() -> tuple[str, ...]:
    """The models a checklist and a dossier exist for (``dashboard.services.dossier.model_names``)."""
    # lazy: only the Governance page's checklist tab needs it
    from dashboard.services.dossier import model_names

    return model_names()


@st.cache_data(max_entries=8, show_spinner=False)
def _model_checklist(path: str, version: str, model: str, used: tuple, evidence_files: tuple):
    # lazy: only the Governance page's checklist tab needs it
    from dashboard.services.dossier import model_checklist as fill_checklist

    return fill_checklist(model, Path(path))


def model_checklist(ref: StoreRef, model: str):
    """``oncolens checklist MODEL``'s result, cached per data version and per the model's audit events
    (their count and last time: one indexed query), not per file stamp: every page view writes an
    audit event, and the data-quality checks inside the evidence take seconds on a large store."""
    with store.open_store(ref.path, read_only=True, wait_s=READ_WAIT_S) as con:
        n, last = store.one_row(
            con.execute(
                "SELECT count(*), max(occurred_at)::VARCHAR FROM audit_event WHERE model_name = ?",
                [model],
            )
        )
    folder = treatment_model_files.model_dir_for(Path(ref.path))
    files = [
        treatment_model_files.model_paths(folder)[1],
        *sorted((folder / "validation").glob("*.json")),
        *_bundle_files(model),
    ]
    # a retrained model or a newly saved validation run changes the answers
    return _model_checklist(
        ref.path, ref.version, model, (int(n), last), tuple((str(f), file_stamp(f)) for f in files)
    )


def _bundle_files(model: str) -> list[Path]:
    """A 3D model's JSON files that its checklist reads (none for another model)."""
    # lazy: JSON only (models.volumes.cards), and only for the Governance page's checklist
    from models.volumes.cards import SALIENCY_FILE, BundleError, find_bundle

    try:
        root = find_bundle(model)
    except BundleError:
        return []
    parts = ("docs/card.json", SALIENCY_FILE, "configs/metadata.json", "oncolens.json")
    return [root / part for part in parts]


@st.cache_resource(show_spinner=False)
def demo_volume():
    """The viewer's demo volume (``models.training.phantom_volume``), seeded: drawn once per process."""
    # lazy: only the Imaging page's viewer demo needs it
    from models.training.phantom_volume import brain_phantom

    return brain_phantom()


# --- lineage, sign-off and drift (Governance, issue 22 items 3-5) ------------------------------


@st.cache_data(max_entries=64, show_spinner=False)
def _approval(
    path: str, stamp: tuple[int, ...], model_name: str, version: str, version_id: str | None
):
    # lazy: only pages that show a model's output need it
    from analytics.governance.lifecycle import approvals

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return approvals.approval(con, model_name, version, version_id)


def _card_stamps(path: str) -> tuple:
    """File stamps of every card a version id comes from (imaging cards, the 3D bundles' card,
    metadata and registration, the clinic's card)."""
    from models.inference import registry  # lazy: slow import

    imaging = tuple(
        (name, file_stamp(registry.find_model_files(name)[1]))
        for name in registry.available_models()
    )
    # lazy: JSON only (models.volumes.cards), for the 3D bundles' pinned weights
    from models.volumes.cards import available_bundles

    volumes = tuple(
        (str(f), file_stamp(f)) for name in available_bundles() for f in _bundle_files(name)
    )
    return (
        *imaging,
        *volumes,
        _treatment_model_stamp(treatment_model_files.model_dir_for(Path(path))),
    )


@st.cache_data(max_entries=8, show_spinner=False)
def _version_ids(path: str, card_stamps: tuple) -> dict[tuple[str, str], str | None]:
    # lazy: only pages that show a model's output need it
    from dashboard.services import lifecycle

    return lifecycle.version_ids(path)


def version_id(ref: StoreRef, model_name: str, version: str) -> str | None:
    """The sha256 of the weights of this model version's card (None: no such card present);
    keyed on the cards' file stamps, so retrained weights are seen at once."""
    return _version_ids(ref.path, _card_stamps(ref.path)).get((str(model_name), str(version)))


def worklist_signoff(ref: StoreRef, ranked_by: str | None):
    """What the worklist may show (``buckets.SignOff``): the imaging versions whose current weights
    are approved, whether approval is required, whether the forecast that ranked it is withheld."""
    # lazy: only the Worklist page needs it
    from dashboard.services import lifecycle

    forecast = None if ranked_by is None else approval(ref, "forecast", ranked_by)
    ids = _version_ids(ref.path, _card_stamps(ref.path))
    # 2D and 3D: the quoted reads are 2D only, the count of new reads since a review is both
    statuses = {k: approval(ref, *k) for k in lifecycle.read_keys(ids)}
    return lifecycle.worklist_signoff(statuses, forecast, signoffs(ref)[1])


def imaging_approvals(ref: StoreRef) -> dict:
    """(model, version) -> ``approvals.Approval`` of every imaging card present (its weights)."""
    # lazy: only the Worklist page needs it
    from dashboard.services import lifecycle

    ids = _version_ids(ref.path, _card_stamps(ref.path))
    return {k: approval(ref, *k) for k in lifecycle.imaging_keys(ids)}


def approval(ref: StoreRef, model_name: str, version: str):
    """The sign-off of this version's current weights (``approvals.Approval``); keyed on the
    store's stamp and the weights' sha256, so a decision or new weights show at once."""
    return _approval(
        ref.path, ref.stamp, str(model_name), str(version), version_id(ref, model_name, version)
    )


@st.cache_data(max_entries=4, show_spinner=False)
def _model_registry(path: str, stamp: tuple[int, ...]):
    # lazy: only the Governance page needs it
    from dashboard.services import lifecycle

    return lifecycle.model_registry(path)


def model_registry(ref: StoreRef):
    """Every model version with its lineage, and the trail's predictions per version."""
    return _model_registry(ref.path, ref.stamp)


@st.cache_data(max_entries=4, show_spinner=False)
def _signoffs(path: str, stamp: tuple[int, ...]) -> tuple[pd.DataFrame, bool]:
    # lazy: only the Governance page needs it
    from analytics.governance.lifecycle import approvals

    with store.open_store(path, read_only=True, wait_s=READ_WAIT_S) as con:
        return approvals.decision_history(con), approvals.require_approval(con)


def signoffs(ref: StoreRef) -> tuple[pd.DataFrame, bool]:
    """Every sign-off decision (newest first) and whether approval is required."""
    return _signoffs(ref.path, ref.stamp)


@st.cache_data(max_entries=4, show_spinner=False)  # the page shows a status box (``working``)
def _imaging_drift(path: str, version: str, frequency: str):
    # lazy: only the Governance page's drift tab needs it
    from dashboard.services import lifecycle

    return lifecycle.imaging_drift(path, frequency)


@st.cache_data(max_entries=2, show_spinner=False)  # the page shows a status box (``working``)
def _treatment_drift(
    path: str, version: str, model_stamp: tuple[int, ...] | None, patient_frequency: str
):
    # lazy: only the Governance page's drift tab needs it
    from dashboard.services import lifecycle

    return lifecycle.treatment_drift(path, patient_frequency)


def drift(ref: StoreRef, frequency: str = "month", patient_frequency: str = "year"):
    """Each model's drift reports and notes (``lifecycle.drift``'s, in its order), in two caches:
    the images' part per window, the clinic model's per clinical version and model files, so a
    new window recomputes only the images' part (issue 23: 2 s a window change)."""
    folder = treatment_model_files.model_dir_for(Path(ref.path))
    imaging, imaging_notes = _imaging_drift(ref.path, ref.version, frequency)
    treatment, treatment_notes = _treatment_drift(
        ref.path, ref.version, _treatment_model_stamp(folder), patient_frequency
    )
    return imaging + treatment, imaging_notes + treatment_notes
