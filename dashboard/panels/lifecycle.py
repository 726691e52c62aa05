"""The Governance page's Lineage, Sign-off and Drift tabs (issue 22 items 3-5).

Lineage: every model version (current cards, then other versions the audit trail names), what
it was trained and validated on, by which code and command, and how many predictions in the
trail point to it; the store's own version and metadata, with no secret or sign-in table in
sight. Sign-off: a board member approves or rejects a version with a comment (a chained audit
event, ``analytics.governance.lifecycle.approvals``); the admin requires approval or not. Drift:
per model, the figures per window and the alerts with their test and threshold.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from analytics import store
from analytics.governance.lifecycle import approvals, drift_data, lineage
from dashboard import resources
from dashboard.figures import drift as drift_figures
from dashboard.services import lifecycle as lifecycle_service

# tables the lineage tab never lists (secrets, sign-in throttling, accounts: not the board's data)
PRIVATE_TABLES = ("app_secret", "sign_in_throttle", "app_user")


def render_lineage(versions: list[lineage.ModelVersion], usage: pd.DataFrame, snapshot) -> None:
    st.caption(
        "Every model version: the data it was trained and validated on, the code and the command. "
        "Each prediction in the audit trail names its model and version; the version id is the "
        "sha256 of the weights. `oncolens lineage --json` prints the same."
    )
    st.dataframe(lineage.registry_frame(versions, usage), hide_index=True, width="stretch")
    for v in versions:
        with st.expander(f"{v.model_name} {v.version} · {v.short_id}", expanded=False):
            if not v.card_present:
                st.warning(
                    "Its card is no longer present (a retrained model replaced it): the audit trail "
                    "still names this version, its lineage cannot be shown."
                )
                continue
            left, right = st.columns(2)
            left.markdown("**Data**")
            left.json(v.data, expanded=True)
            right.markdown("**Code and command**")
            right.json({**v.code, "command": v.command, "trained": v.trained_at}, expanded=True)
            if v.missing:
                st.caption(
                    "Not recorded by this card: " + ", ".join(v.missing) + ". A retraining with "
                    "this version of OncoLens records them."
                )
    st.markdown("#### This store")
    st.metric("Schema version", snapshot.schema_version)
    st.dataframe(snapshot.metadata, hide_index=True)
    counts = snapshot.table_counts
    st.dataframe(counts[~counts["table"].isin(PRIVATE_TABLES)], hide_index=True, width="content")
    st.caption(
        "Tables under `truth.` hold the simulation's ground truth; they are counted here and read only "
        "by validation code, never by a page or a model. Accounts and secrets are not listed."
    )


def _status_frame(ref: resources.StoreRef, versions: list[lineage.ModelVersion]) -> pd.DataFrame:
    rows = []
    for v in versions:
        status = resources.approval(ref, v.model_name, v.version)
        rows.append(
            {
                "model": v.model_name,
                "version": v.version,
                "version id": v.short_id,
                "status": status.status_text,
                "by": status.decided_by or "",
                "on": "" if status.decided_at is None else f"{status.decided_at:%Y-%m-%d %H:%M}",
                "comment": status.comment or "",
            }
        )
    return pd.DataFrame(rows)


def render_signoff(
    ref: resources.StoreRef,
    versions: list[lineage.ModelVersion],
    actor: tuple[str, str | None],
) -> None:
    history, required = resources.signoffs(ref)
    st.caption(
        "The ethics board approves or rejects each model version with a comment; the decision is a "
        "hash-chained audit event (the chain check on the Audit trail tab covers it). Output of a "
        "version not approved carries a banner wherever it appears"
        + ("; this installation withholds it (admin setting)." if required else ".")
    )
    st.dataframe(_status_frame(ref, versions), hide_index=True, width="stretch")
    username, role = actor
    if role in approvals.BOARD_ROLES:
        present = [v for v in versions if v.card_present and v.version_id]
        with st.form("signoff_form", clear_on_submit=True):
            st.markdown("#### Record a decision")
            picked = st.selectbox(
                "Model version",
                range(len(present)),
                key="signoff_version",
                format_func=lambda i: (
                    f"{present[i].model_name} {present[i].version} · {present[i].short_id}"
                ),
            )
            decision = st.radio(
                "Decision",
                [approvals.APPROVED, approvals.REJECTED],
                horizontal=True,
                key="signoff_decision",
            )
            comment = st.text_area(
                "Comment (required)",
                key="signoff_comment",
                max_chars=approvals.COMMENT_MAX,
                placeholder="What the board reviewed and why it decided so",
            )
            if st.form_submit_button("Record the decision", type="primary") and present:
                v = present[int(picked)]
                try:
                    event = lifecycle_service.record_decision(
                        ref.path,
                        model_name=v.model_name,
                        model_version=v.version,
                        version_id=v.version_id,
                        decision=decision,
                        comment=comment,
                        actor=username,
                        role=role,
                        wait_s=resources.READ_WAIT_S,
                    )
                except (approvals.ApprovalError, store.StoreError) as exc:
                    st.error(f"Not recorded: {exc}")
                else:
                    st.success(
                        f"Recorded: {v.model_name} {v.version} {decision} (audit event {event})."
                    )
                    st.rerun()
    else:
        st.info("Members of the ethics board record approvals and rejections here.")
    if role in approvals.SETTING_ROLES:
        st.markdown("#### Setting")
        wanted = st.toggle(
            "Require approval before any output is shown",
            value=required,
            key="signoff_require",
            help="When on, pages, the report and the CLI withhold the output of every model "
            "version the ethics board has not approved, with a message saying so.",
        )
        if wanted != required:
            try:
                lifecycle_service.set_requirement(
                    ref.path, wanted, actor=username, role=role, wait_s=resources.READ_WAIT_S
                )
            except (approvals.ApprovalError, store.StoreError) as exc:
                st.error(f"Not changed: {exc}")
            else:
                st.rerun()
    st.markdown("#### Decisions")
    if history.empty:
        st.caption("No decision recorded yet.")
    else:
        shown = history.copy()
        current = {(v.model_name, v.version_id) for v in versions if v.card_present}
        shown.insert(
            6,
            "applies to current weights",
            [
                "no: no weights recorded"  # decided before decisions named their weights
                if not isinstance(vid, str) or not vid
                else ("yes" if (model, vid) in current else "no: other weights")
                for model, vid in zip(shown["model"], shown["version_id"], strict=True)
            ],
        )
        shown["version_id"] = shown["version_id"].fillna("").str[:12]
        st.dataframe(shown, hide_index=True, width="stretch")


def render_drift(reports: list, notes: list[str]) -> None:
    alerts = [a for r in reports for a in r.alerts]
    tests = sum(r.tests_run for r in reports if r.monitored != drift_data.IN_SAMPLE)
    st.caption(
        "What each model sees (image statistics and the input guard's score; patients' covariates) "
        "and, where outcomes are known, its calibration, per window against its validation "
        "reference. Alerts: two-sample test p < 0.01 / number of features (KS, or chi-square for "
        "features with few values); PSI > 0.2 in windows of at least 100; calibration slope or "
        "intercept whose 95 % interval excludes 1 or 0. Without drift about 1 window in 100 alerts by "
        "chance (calibration: about 1 in 10). `oncolens drift --json` prints the same."
    )
    left, right = st.columns(2)
    left.metric("Tests run", tests)
    right.metric("Alerts", len(alerts))
    if alerts:
        table = pd.DataFrame([a.to_json() for a in alerts])
        table["value"] = table["value"].map(lambda v: f"{v:.3g}")  # p far below 0.001 stays legible
        columns = ["model", "window", "feature", "message", "test", "value", "threshold"]
        st.dataframe(table[columns], hide_index=True, width="stretch")
    for report in reports:
        st.markdown(f"#### {report.model}: {report.monitored}")
        st.caption(f"Reference: {report.reference}")
        if report.tests_run == 0:  # nothing to draw: say why in a line, not an empty chart
            st.info(" ".join(report.notes) or "No window has enough data to test yet.")
            continue
        if report.monitored.startswith(
            "calibration"
        ):  # the drift monitor or its in-sample reference
            st.plotly_chart(drift_figures.calibration_drift_figure(report))
        else:
            st.plotly_chart(drift_figures.input_drift_figure(report))
        for note in report.notes:
            st.caption(note)
        if not report.rows.empty:
            with st.expander("Figures per window", expanded=False):
                st.dataframe(report.rows, hide_index=True, width="stretch")
    for note in notes:
        st.caption(note)


def json_rows(reports: list) -> str:
    """All reports as JSON lines (the CLI's format), for the tab's download button."""
    return "\n".join(json.dumps(r.to_json(), default=str) for r in reports) + "\n"
