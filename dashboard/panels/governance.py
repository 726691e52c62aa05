"""The Governance page's sections: model cards, subgroup audits, saliency checks, audit trail, decisions.

Each function renders one section from plain results (``dashboard/resources.py``
computes and caches them; ``dashboard/figures/governance.py`` draws). Every
figure names what it was computed on and its n.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from analytics import store
from analytics.governance import audit, quality, users
from analytics.governance.board import AuditFilterOptions, DecisionRates
from dashboard import resources
from dashboard.figures import formats
from dashboard.figures.governance import (
    calibration_curves_figure,
    calibration_figure,
    card_calibration_series,
    reliability_points,
)
from dashboard.services.dossier import CALIBRATION_SIGNS

CARD_SECTIONS = (
    "intended_use",
    "out_of_scope",
    "training_data",
    "evaluation_data",
    "training",
    "calibration",
    "caveats",
    "limits",
    "missing_values",
    "decision_rule",
)


def _ci(m) -> str:
    if isinstance(m, dict) and {"value", "ci_low", "ci_high"} <= set(m):
        return f"{m['value']:.3f} (95 % CI {m['ci_low']:.3f}–{m['ci_high']:.3f})"
    return json.dumps(m) if isinstance(m, dict | list) else str(m)


def render_card(card: dict, kind: str) -> None:
    """One model card (Mitchell et al. 2019): identity, use, data, metrics with CIs, calibration, caveats."""
    title = card.get("title") or card.get("name") or kind
    weights = card.get("weights", {})
    st.markdown(f"#### {title} · v{card.get('version', '?')}")
    st.caption(
        f"{kind} · weights sha256 `{str(weights.get('sha256', 'n/a'))[:16]}…` "
        f"({weights.get('file', 'n/a')})"
    )
    for key in CARD_SECTIONS:
        if key not in card:
            continue
        value = card[key]
        label = key.replace("_", " ").capitalize()
        if isinstance(value, list):
            st.markdown(f"**{label}:**\n" + "\n".join(f"- {v}" for v in value))
        elif isinstance(value, dict):
            st.markdown(
                f"**{label}:** "
                + "; ".join(
                    f"{k.replace('_', ' ')} {v}"
                    for k, v in value.items()
                    if not isinstance(v, dict | list)
                )
            )
        else:
            st.markdown(f"**{label}:** {value}")
    metrics = card.get("metrics", {})
    flat = [
        {"metric": k.replace("_", " "), "value": _ci(v)}
        for k, v in metrics.items()
        if k not in ("reliability", "learners", "class_counts", "cross_validation")
    ]
    learners = metrics.get("learners") or {}
    for name, m in (
        {} if "selection" in learners else learners
    ).items():  # else render_selection's table
        if isinstance(m, dict) and "harrell_c" in m:
            flat.append(
                {
                    "metric": f"{name}: cross-validated Harrell's C",
                    "value": f"{m['harrell_c'].get('mean', float('nan')):.3f}",
                }
            )
    guard = (card.get("input_guard") or {}).get("out_of_distribution")
    if guard:  # imaging models (issue 18): the input guard's detection on its test set
        flat.append(
            {
                "metric": "input guard: AUROC, out-of-distribution vs held-out phantoms",
                "value": f"{guard['auroc']:.3f} (refuses {guard['refusal_rate_out_of_distribution']:.0%} "
                f"of {guard['n_out_of_distribution']} OOD images, "
                f"{guard['refusal_rate_in_distribution']:.1%} of {guard['n_in_distribution']} phantoms)",
            }
        )
    small = ((card.get("known_weak_spots") or {}).get("small_lesions") or {}).get("sensitivity")
    for band, est in (small or {}).items():
        flat.append(
            {
                "metric": f"known weak spot: sensitivity, lesions {band.replace('_', ' ')}",
                "value": _ci(est),
            }
        )
    if flat:
        st.dataframe(pd.DataFrame(flat), hide_index=True, width="stretch")
    render_selection(card)
    series = card_calibration_series(card)
    if series:  # the treatment card's calibration (issue 22: the card had no calibration plot)
        cal = card["calibration"]
        st.plotly_chart(
            calibration_curves_figure(
                series,
                title="Calibration: out-of-fold predicted vs Kaplan-Meier RFS at the horizon, by tenth of predicted",
                x_title="mean predicted RFS",
                y_title="observed (Kaplan-Meier) RFS, 95 % band",
            ),
            key=f"cal_card_{card.get('name')}",
        )
        st.caption(
            f"Overall predicted {cal['overall']['mean_predicted']:.3f} vs Kaplan-Meier {cal['overall']['observed']:.3f} "
            f"(gap {cal['overall']['gap']:+.3f}; {cal['sign']}). {CALIBRATION_SIGNS}"
        )
    elif card.get("name") == "treatment_outcome":
        st.info(
            "This card holds no calibration (written before issue 22): retrain with "
            "`oncolens recommend --train` to add it."
        )
    points = reliability_points(card)
    if not points.empty:
        st.plotly_chart(
            calibration_figure(
                points,
                x="mean_confidence",
                y="accuracy",
                label="bin",
                title="Reliability on the held-out test set",
                x_title="mean confidence of the predicted class",
                y_title="accuracy",
            ),
            key=f"rel_{card.get('name')}",
        )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def render_selection(card: dict) -> None:
    """Why the deployed learner was kept although another scored a higher C (issue 22): the card's rule,
    each candidate's paired difference from it, and which (if any) were clearly better."""
    learners = (card.get("metrics") or {}).get("learners") or {}
    sel = learners.get("selection") or {}
    if not sel:
        return
    kept = sel.get("kept")
    rows = []
    for name, m in learners.items():
        if name == "selection" or not isinstance(m, dict) or "harrell_c" not in m:
            continue
        diff = (m.get(f"{kept}_minus_this") or {}).get("harrell_c") or {}
        rows.append(
            {
                "learner": name + (" (deployed)" if name == kept else ""),
                "cross-validated Harrell's C": f"{m['harrell_c']['mean']:.3f} ± {m['harrell_c']['sd']:.3f}",
                "deployed minus this": (
                    f"{diff['mean']:+.3f} (SE {diff['se']:.3f})"
                    if diff.get("se") is not None
                    else "—"
                ),
            }
        )
    better = sel.get("better_than_kept") or []
    st.markdown(
        f"**Deployed learner: {kept}.** {_sentence(str(sel.get('why_kept', '')))}. "
        + (
            f"Clearly better on this data: {', '.join(better)}."
            if better
            else "A higher C elsewhere is within two paired standard errors of the deployed learner's."
        )
    )
    st.dataframe(
        pd.DataFrame(rows), hide_index=True, width="stretch", key=f"sel_{card.get('name')}"
    )
    st.caption(f"Rule: {sel.get('rule', '')}.")


def gap_is_supported(row: dict) -> bool:
    """A subgroup gap is flagged only when its 95 % interval excludes zero."""
    lo, hi = row.get("ci_low"), row.get("ci_high")
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def _gap_table(report: dict) -> pd.DataFrame:
    rows = []
    for r in report.get("gaps", []):
        ci = "" if r["ci_low"] is None else f"{r['ci_low']:+.3f} to {r['ci_high']:+.3f}"
        rows.append(
            {
                "attribute": r["attribute"],
                "metric": r["title"],
                "gap": r["gap"],
                "95 % CI": ci or "— (too few patients)",
                "interval excludes 0": "yes" if gap_is_supported(r) else "no",
                "lowest": f"{r['low_group']} {r['low_value']:.3f} (n={r['n_low']})",
                "highest": f"{r['high_group']} {r['high_value']:.3f} (n={r['n_high']})",
            }
        )
    return pd.DataFrame(rows)


def render_largest(report: dict) -> None:
    """The largest gap of each metric, named: what an ethics board reads first."""
    for row in report.get("largest_gap", {}).values():
        ci = (
            ""
            if row["ci_low"] is None
            else f" (95 % CI {row['ci_low']:+.3f} to {row['ci_high']:+.3f})"
        )
        text = (
            f"**Largest {row['title']} gap: {row['gap']:.3f}{ci}** by {row['attribute'].replace('_', ' ')}: "
            f"{row['low_group']} {row['low_value']:.3f} (n={row['n_low']}) vs {row['high_group']} "
            f"{row['high_value']:.3f} (n={row['n_high']})."
        )
        # A warning only where the statistics support one: the gap's interval excludes zero (issue 20).
        if gap_is_supported(row):
            st.warning(text, icon=":material/balance:")
        elif row["ci_low"] is None:
            st.info(f"{text} No interval: too few patients to tell a gap from chance.")
        else:
            st.info(f"{text} The interval includes zero: not distinguishable from chance.")
    for attribute, why in report.get("skipped", {}).items():
        st.caption(f"Not audited: {attribute.replace('_', ' ')} — {why}.")


def render_subgroup_report(report: dict, key: str) -> None:
    """Largest gaps, the per-group table and the gaps of every attribute."""
    render_largest(report)
    st.dataframe(
        pd.DataFrame(report.get("by_group", [])), hide_index=True, width="stretch", key=f"bg_{key}"
    )
    st.caption(
        f"Gaps: highest minus lowest group with n ≥ {report.get('min_n')}; 95 % CI by percentile "
        f"bootstrap ({report.get('bootstrap')} resamples per group, seed {report.get('seed')})."
    )
    st.dataframe(_gap_table(report), hide_index=True, width="stretch", key=f"gaps_{key}")


def render_treatment_audit(report: dict) -> None:
    st.caption(
        f"Model {report['model_version']} · {report['data']}. {report['decision']}. "
        f"{report['known_5y_status']} patients have a known 5-year status; {report['censored_before_5y']} "
        "censored earlier are left out of AUC, TPR, FPR."
    )
    st.markdown("##### Discrimination and calibration over follow-up (every patient)")
    render_subgroup_report(report["survival"], "t_surv")
    groups = pd.DataFrame(report["survival"]["by_group"])
    if not groups.empty:
        groups["label"] = groups["attribute"].str.replace("_", " ") + ": " + groups["group"]
        st.plotly_chart(
            calibration_figure(
                groups,
                x="predicted_rfs_5y",
                y="km_rfs_5y",
                label="label",
                title="Calibration by subgroup: predicted vs Kaplan-Meier 5-year RFS",
                x_title="mean predicted 5-year RFS",
                y_title="observed (Kaplan-Meier) 5-year RFS",
            ),
            key="cal_treat",
        )
    st.markdown("##### 5-year event: AUC and error rates at the stated threshold")
    st.caption(CALIBRATION_SIGNS)
    render_subgroup_report(report["five_year"], "t_5y")


def render_imaging_audit(report: dict) -> None:
    st.caption(
        f"{report['model']} v{report['model_version']} · {report['data']}. Decision: {report['decision']}. "
        f"{report['note']}"
    )
    render_subgroup_report(report, f"img_{report['model']}")
    groups = pd.DataFrame(report.get("by_group", []))
    if not groups.empty:
        groups["label"] = groups["attribute"].str.replace("_", " ") + ": " + groups["group"]
        st.plotly_chart(
            calibration_figure(
                groups,
                x="mean_predicted",
                y="observed_rate",
                label="label",
                title=f"Calibration by subgroup: P({report['positive_label']}) predicted vs observed",
                x_title="mean predicted probability",
                y_title="observed rate",
            ),
            key=f"cal_{report['model']}",
        )


def render_saliency(
    name: str,
    quality: dict | None,
    command: str = "python -m models.saliency.quality --write-cards",
) -> None:
    """The model card's saliency section: sanity check (Adebayo et al. 2018) and localisation, per method."""
    if not quality:
        st.info(
            f"{name}: saliency quality not measured yet for these weights (run `{command}`).",
            icon=":material/hourglass_empty:",
        )
        return
    rows = []
    for method, m in (quality.get("methods") or {}).items():
        sanity = m.get("sanity", {}) or {}
        rho = (sanity.get("spearman_abs") or {}).get("value")
        pg = m.get("pointing_game") or {}
        rows.append(
            {
                "method": method,
                "sanity check": "passed" if sanity.get("passed") else "FAILED",
                "rank correlation trained vs randomised": rho,
                "pointing game": pg.get("value"),
                "deletion AUC": m.get("deletion_auc"),
                "insertion AUC": m.get("insertion_auc"),
            }
        )
    st.caption(
        f"{name}: {quality.get('data', '')} · sanity threshold {quality.get('sanity_threshold', '?')} "
        "(Spearman of |map|, trained vs re-initialised weights; a method above it fails and is flagged "
        "on the Imaging page)."
    )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key=f"sal_{name}")
    failed = [r["method"] for r in rows if r["sanity check"] == "FAILED"]
    if failed:
        st.error(
            f"{name}: {', '.join(failed)} failed the model-randomisation sanity check.",
            icon=":material/error:",
        )


def audit_filters(options: AuditFilterOptions) -> dict:
    """The audit trail's filter widgets (action, user, date range), read into one dict of
    ``resources.audit_trail``'s keyword arguments."""
    cols = st.columns([2, 2, 2])
    actions = cols[0].multiselect("Action", options.actions, key="gov_actions")
    actors = cols[1].multiselect("User", options.actors, key="gov_actors")
    first = options.first or dt.date.today()
    last = options.last or dt.date.today()
    span = cols[2].date_input("Date range", value=(first, last), key="gov_dates")
    since, until = span if isinstance(span, tuple | list) and len(span) == 2 else (first, last)
    return {"actions": tuple(actions), "actors": tuple(actors), "since": since, "until": until}


def render_decisions(rates: DecisionRates) -> None:
    if not rates.decisions:
        st.info("No treatment decisions recorded yet (the Patient page records accept / override).")
        return
    a, b, c, d = st.columns(4)
    a.metric("Decisions", rates.decisions)
    rate = rates.accept_rate
    b.metric("Accepted", rates.accepted, help="the clinician chose the recommended option")
    c.metric("Overridden", rates.overridden, help="another option although one was recommended")
    d.metric(
        "Accept rate",
        "n/a" if rate is None else f"{rate:.0%}",
        help="accepted / (accepted + overridden); decisions without a recommendation are left out",
    )
    st.caption(
        f"No clear recommendation (clinician's choice): {rates.no_recommendation}. Per model version:"
    )
    st.dataframe(rates.by_version, hide_index=True, width="stretch")


# --- data quality (issue 22) ----------------------------------------------------------------------

_VERDICT = {True: "pass", False: "FAIL", None: "not run"}


def quality_table(results: list) -> pd.DataFrame:
    """One row per check (``quality.CheckResult``), failures first, for the page and its tests."""
    frame = pd.DataFrame(
        [
            {
                "result": _VERDICT[r.passed],
                "check": r.name,
                "failing": r.n_failed,
                "checked": r.n_checked,
                "failing %": round(r.pct, 3),
                "allowed %": r.threshold_pct,
                "category": r.category,
                "table": r.table,
                "what it checks": r.description,
            }
            for r in results
        ]
    )
    if frame.empty:
        return frame
    order = frame["result"].map({"FAIL": 0, "not run": 1, "pass": 2})
    return frame.assign(_o=order).sort_values(["_o", "category", "check"]).drop(columns="_o")


def quality_rerun() -> float:
    """A "Run the checks again" button; returns when it was last pressed in this session (0: never).

    Results are kept while the store's records keep their row counts; an edit in place does not.
    """
    if st.button(
        "Run the checks again",
        key="dq_rerun",
        icon=":material/refresh:",
        help="Results are kept until records are added or removed; run again after an edit in place.",
    ):
        st.session_state["dq_asked"] = time.time()
    return float(st.session_state.get("dq_asked", 0.0))


def render_quality(results: list, rows_of) -> str | None:
    """Pass / fail per category, every check, and the failing rows of one chosen check.

    ``rows_of(name)`` returns that check's failing rows (pseudonymised); returns the check shown.
    """
    counts = quality.summary(results).set_index("category")
    columns = st.columns(len(quality.CATEGORIES))
    for column, category in zip(columns, quality.CATEGORIES, strict=True):
        row = counts.loc[category]
        failed, not_run = int(row["failed"]), int(row["not_run"])
        column.metric(
            category.capitalize(),
            f"{int(row['passed'])} of {int(row['checks'])} pass",
            delta=(f"{failed} failing" if failed else "none failing")
            + (f", {not_run} not run" if not_run else ""),
            delta_color="inverse" if failed else "off",
            delta_arrow="off",
            border=True,
        )
    failing = [r for r in results if r.passed is False]
    if failing:
        st.error(
            f"{len(failing)} of {len(results)} checks fail: "
            + ", ".join(r.name.replace("_", " ") for r in failing)
            + ". Models, cohorts and forecasts read these rows as they are.",
            icon=":material/rule:",
        )
    else:
        st.success(
            f"All {len(results)} data-quality checks pass on this store.",
            icon=":material/check_circle:",
        )
    st.dataframe(
        quality_table(results),
        hide_index=True,
        width="stretch",
        key="dq_checks",
        column_config={
            "failing %": st.column_config.NumberColumn(format="%.3f"),
            "allowed %": st.column_config.NumberColumn(format="%g"),
        },
    )
    with_rows = [r.name for r in results if r.n_failed]
    if not with_rows:
        st.caption("No check has failing rows to show.")
        return None
    chosen = st.selectbox(
        "Failing rows of",
        with_rows,
        format_func=lambda n: n.replace("_", " "),
        key="dq_check",
        help="Rows name patients by pseudonym only (never a name, MRN or record id).",
    )
    rows = rows_of(chosen)
    st.dataframe(rows, hide_index=True, width="stretch", key="dq_rows")
    st.caption(
        f"{len(rows)} row(s) shown (at most 500). Patients are pseudonymised (HMAC under the store's key); "
        "details give days between events, not dates. `oncolens quality --json` runs the same checks."
    )
    return chosen


# --- accounts and the audit chain (admin; issue 22) ---------------------------------------------


def render_verify(db_path, actor: tuple[str, str | None]) -> None:
    """A button that walks the hash chain (``audit.verify_store``, as `oncolens audit verify`) and
    says the result; the check itself is an audit event."""
    if not st.button("Verify the audit chain", key="gov_verify", icon=":material/verified:"):
        return
    try:
        result = audit.verify_store(db_path, wait_s=10.0)
        audit.record_event(
            db_path,
            actor=actor[0],
            role=actor[1],
            action="audit_verified",
            details={"ok": result.ok, "events": result.events, "first_bad": result.first_bad},
            wait_s=10.0,
        )
    except store.StoreError as exc:
        st.error(f"The chain could not be checked now: {exc}")
        return
    if result.ok:
        st.success(
            f"The audit chain holds: {result.events} events, head hash `{(result.head_hash or '')[:16]}…`. "
            "Anchor the head outside the store (`oncolens audit anchor`) to detect a rewritten trail.",
            icon=":material/verified:",
        )
    elif result.unsealed:  # a store from before the chain: nothing to verify, not tampering
        st.warning(
            f"The audit trail cannot be verified (it is not broken): {result.problem}",
            icon=":material/help:",
        )
    else:
        where = f"event {result.first_bad}" if result.first_bad is not None else "the chain head"
        st.error(
            f"The audit chain is broken at {where}: {result.problem}", icon=":material/gpp_bad:"
        )


def accounts_table(accounts: list) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "username": u.username,
                "role": u.role.replace("_", " "),
                "sign-in": " + ".join(
                    m for m, on in (("password", u.has_password), ("single sign-on", u.email)) if on
                ),
                "status": "active" if u.active else "deactivated",
                "created (UTC)": u.created_at,
            }
            for u in accounts
        ],
        columns=["username", "role", "sign-in", "status", "created (UTC)"],
    )


def render_users(db_path, accounts_of, actor: tuple[str, str | None]) -> None:
    """The admin's account management: add, change a role, deactivate or reactivate.

    Calls the same functions as `oncolens users` (``users.create_account``, ``change_role``,
    ``set_active``); each change is a chained audit event written with it. ``accounts_of()``
    reads the accounts fresh, after any change of this run.
    """
    who = {"actor": actor[0], "actor_role": actor[1], "wait_s": 10.0}
    listing = st.container()  # the accounts first on screen, read after this run's change
    add_col, role_col, active_col = st.columns(3, gap="medium")
    outcome: tuple[str, str] | None = None
    with add_col.form("gov_user_add", clear_on_submit=True, border=True):
        st.markdown("**Add an account**")
        name = st.text_input("Username", key="gov_new_name")
        role = st.selectbox(
            "Role", users.ROLES, format_func=lambda r: r.replace("_", " "), key="gov_new_role"
        )
        password = st.text_input(
            "Password",
            type="password",
            key="gov_new_password",
            help=f"At least {users.MIN_PASSWORD_LENGTH} characters; leave empty for single sign-on only.",
        )
        email = st.text_input("Single sign-on email (optional)", key="gov_new_email")
        if st.form_submit_button("Add account", type="primary"):
            try:
                made = users.create_account(
                    db_path,
                    name,
                    role,
                    password=password or None,
                    email=email.strip() or None,
                    **who,
                )
                outcome = ("ok", f"Added {made.username} ({made.role.replace('_', ' ')}).")
            except (users.UserError, store.StoreError) as exc:
                outcome = ("error", f"Not added: {exc}")
    current = accounts_of()
    names = [u.username for u in current]
    with role_col.form("gov_user_role", border=True):
        st.markdown("**Change a role**")
        target = st.selectbox("Account", names, key="gov_role_user")
        new_role = st.selectbox(
            "New role", users.ROLES, format_func=lambda r: r.replace("_", " "), key="gov_role_new"
        )
        if st.form_submit_button("Change role"):
            try:
                changed = users.change_role(db_path, target or "", new_role, **who)
                outcome = (
                    "ok",
                    f"{changed.username} now has the role {changed.role.replace('_', ' ')}.",
                )
            except (users.UserError, store.StoreError) as exc:
                outcome = ("error", f"Not changed: {exc}")
    with active_col.form("gov_user_active", border=True):
        st.markdown("**Deactivate or reactivate**")
        target = st.selectbox("Account", names, key="gov_active_user")
        left, right = st.columns(2)
        with left:
            deactivate = st.form_submit_button("Deactivate")
        with right:
            reactivate = st.form_submit_button("Reactivate")
        st.caption("A deactivated account keeps its name in the audit trail and cannot sign in.")
        if deactivate or reactivate:
            try:
                done = users.set_active(db_path, target or "", bool(reactivate), **who)
                outcome = (
                    "ok",
                    f"{'Reactivated' if done.active else 'Deactivated'} {done.username}.",
                )
            except (users.UserError, store.StoreError) as exc:
                outcome = ("error", f"Not changed: {exc}")
    with listing:
        if outcome is not None:
            (st.success if outcome[0] == "ok" else st.error)(outcome[1])
        st.dataframe(
            accounts_table(accounts_of()), hide_index=True, width="stretch", key="gov_accounts"
        )
    st.caption(
        "Every change is written to the hash-chained audit trail with your name. The last active admin "
        "cannot be deactivated or lose the role. The same changes: `oncolens users add | role | "
        "deactivate | activate | remove`."
    )


# --- reporting checklists and the model dossier (issue 22, items 1-2) ---------------------------


def checklist_table(checklist, only_missing: bool) -> pd.DataFrame:
    """The checklist's items as the page shows them: answered ones with their source, missing ones with
    what would answer them."""
    return pd.DataFrame(
        [
            {
                "checklist": r["checklist"],
                "item": r["item"],
                "topic": r["text"],
                "status": r["status"],
                "answer / what would answer it": r["answer"]
                if r["status"] == "answered"
                else r["needs"],
                "source": r["source"],
            }
            for r in checklist.rows(only_missing=only_missing)
        ],
        columns=["checklist", "item", "topic", "status", "answer / what would answer it", "source"],
    )


def render_checklist(checklist) -> None:
    """Answered / missing counts per checklist, the items (optionally only the missing ones), exports."""
    counts = checklist.counts()
    columns = st.columns(len(counts))
    for column, (name, c) in zip(columns, counts.items(), strict=True):
        total = c["answered"] + c["missing"]
        column.metric(
            name,
            f"{c['answered']} of {total} answered",
            delta=f"{c['missing']} missing" if c["missing"] else "none missing",
            delta_color="inverse" if c["missing"] else "off",
            delta_arrow="off",
            border=True,
        )
    only_missing = st.toggle(
        "Only missing items",
        key=f"chk_missing_{checklist.model}",
        help="What evidence is still to be put on record.",
    )
    st.dataframe(
        checklist_table(checklist, only_missing),
        hide_index=True,
        width="stretch",
        key=f"chk_table_{checklist.model}",
        column_config={
            "topic": st.column_config.TextColumn(width="medium"),
            "answer / what would answer it": st.column_config.TextColumn(width="large"),
        },
    )
    st.caption(
        "Each item is answered by a function that reads the evidence named in 'source' (the model card, "
        "validation runs saved in <store>_models/validation/, the store, installed versions); with no evidence "
        "it is missing. Item texts are short paraphrases: TRIPOD+AI (Collins et al., BMJ 2024), CLAIM "
        "(Mongan et al., Radiol AI 2020), DECIDE-AI (Vasey et al., Nat Med 2022); docs/governance.md. "
        f"`oncolens checklist {checklist.model} --json` prints the same."
    )
    left, right, _ = st.columns([1, 1, 5], gap="small")
    left.download_button(
        "Checklist (CSV)",
        checklist.to_csv().encode(),
        f"oncolens_checklist_{checklist.model}.csv",
        "text/csv",
        key=f"chk_csv_{checklist.model}",
    )
    right.download_button(
        "Checklist (JSON)",
        json.dumps(checklist.to_json(), indent=1).encode(),
        f"oncolens_checklist_{checklist.model}.json",
        "application/json",
        key=f"chk_json_{checklist.model}",
    )


def render_dossier(
    ref, model: str, actor: tuple[str, str | None], clinic=None, audit_of=None
) -> None:
    """One button builds the dossier PDF (``dashboard.services.dossier.dossier_bytes``, as `oncolens
    dossier`), a second downloads it; each build is an audit event (``model_dossier``).

    ``audit_of()``: the treatment subgroup report the page caches, asked for only when a dossier is built.
    """
    # lazy: fpdf, kaleido and the phantoms load only when a dossier is built
    from dashboard.services.dossier import dossier_bytes

    key = f"oncolens.dossier.{model}"
    st.markdown("##### Model dossier (PDF)")
    st.caption(
        "Intended use, data and lineage, discrimination, calibration with plots, subgroup results with "
        "intervals, input guard, saliency quality, failure modes, this checklist, versions and hashes, and "
        f"the audit summary of its use. The same file: `oncolens dossier {model} --out FILE.pdf`."
    )
    if st.button(
        "Prepare the dossier", key=f"dossier_build_{model}", icon=":material/description:"
    ):
        try:
            with resources.working(f"Building the dossier of {model} (figures, subgroup audit)…"):
                st.session_state[key] = dossier_bytes(
                    model,
                    Path(ref.path),
                    actor=actor[0],
                    role=actor[1],
                    phantoms=0,
                    clinic=clinic,
                    treatment_audit=audit_of() if audit_of else None,
                )
        except store.StoreError as exc:
            st.error(f"The dossier could not be built now: {exc}")
    held = st.session_state.get(key)
    if held:
        st.download_button(
            f"Download the dossier of {model} (PDF)",
            held,
            f"oncolens_dossier_{model}.pdf",
            "application/pdf",
            key=f"dossier_dl_{model}",
        )


def _share(found: int, of: int) -> str:
    return f"{found} of {of} ({found / of:.0%})" if of else "none in the test set"


def _volume_metric_rows(metrics: dict) -> list[dict]:
    """The 3D card's figures as rows: Dice and HD95 with intervals, then by lesion size."""
    rows = []
    for key, label in (
        ("dice", "Dice, tumour (held-out volumes with a lesion)"),
        ("hd95_mm", "HD95, mm (95th-percentile surface distance)"),
        ("lesion_sensitivity", "lesion-level sensitivity (a predicted component touches it)"),
    ):
        if key in metrics:
            rows.append({"metric": label, "value": _ci(metrics[key])})
    if metrics.get("hd95_missed"):
        rows.append(
            {
                "metric": "HD95 left out: volumes with nothing predicted",
                "value": str(metrics["hd95_missed"]),
            }
        )
    for band, dice in (metrics.get("dice_by_size") or {}).items():
        rows.append(
            {
                "metric": f"Dice, lesions {band.replace('>=', '≥')}",
                "value": "no lesion of this size in the test set"
                if dice is None
                else f"{dice:.3f}",
            }
        )
    for band, s in (metrics.get("sensitivity_by_size") or {}).items():
        rows.append(
            {
                "metric": f"sensitivity, lesions {band.replace('>=', '≥')}",
                "value": _share(int(s.get("found", 0)), int(s.get("lesions", 0))),
            }
        )
    clear = metrics.get("specificity_no_lesion") or {}
    if clear:
        rows.append(
            {
                "metric": "volumes without a lesion read clear",
                "value": _share(int(clear.get("clear", 0)), int(clear.get("volumes", 0))),
            }
        )
    return rows


def volume_card_label(entry: dict) -> str:
    """The expander's label of a 3D bundle's card (its own name and version, as plain text)."""
    meta = entry.get("metadata") or {}
    return f"Imaging 3D: {formats.markdown_plain(meta.get('name') or entry['name'])} v{formats.markdown_plain(meta.get('version', '?'))}"


def render_volume_card(entry: dict) -> None:
    """A 3D model bundle's card (``models.volumes.cards.bundle_cards``): what it reads, what it
    was trained and tested on, its figures by lesion size, its guard and its limits. A
    registered bundle without a card says that its performance is unknown, not nothing."""
    meta, card, reg = (
        entry.get("metadata") or {},
        entry.get("card") or {},
        entry.get("registration") or {},
    )
    title = formats.markdown_plain(meta.get("name") or entry["name"])
    st.markdown(
        f"#### {title} · v{formats.markdown_plain(meta.get('version') or card.get('version', '?'))}"
    )
    if entry.get("error"):
        st.warning(
            f"This bundle's files cannot be read: {entry['error']}", icon=":material/warning:"
        )
        return
    card_sha = (card.get("weights") or {}).get("sha256")
    # a registered bundle's weights are the ones its registration pinned (and every load checks)
    sha = (reg.get("sha256") if not entry.get("builtin") else None) or card_sha or "n/a"
    origin = (
        "built in, trained on OncoLens's synthetic volumes"
        if entry.get("builtin")
        else f"registered with `oncolens models add` on {str(reg.get('registered_at', '?'))[:10]}"
    )
    st.caption(
        f"3D segmentation model (MONAI bundle) · {origin} · weights sha256 `{str(sha)[:16]}…`"
    )
    image = ((meta.get("network_data_format") or {}).get("inputs") or {}).get("image") or {}
    lines = [
        ("Intended use", meta.get("intended_use")),
        ("Task", meta.get("task")),
        (
            "Input",
            ", ".join(
                part
                for part in (
                    image.get("modality") and f"{image['modality']} volumes",
                    image.get("channel_def") and "; ".join(map(str, image["channel_def"].values())),
                    image.get("pixdim")
                    and "voxel " + " × ".join(f"{v:g}" for v in image["pixdim"]) + " mm",
                )
                if part
            ),
        ),
    ]
    for label, value in lines:
        if value:
            st.markdown(f"**{label}:** {formats.markdown_plain(value)}")
    for key in ("data", "training", "postprocessing"):
        value = card.get(key)
        if isinstance(value, dict) and value:
            st.markdown(
                f"**{key.capitalize()}:** "
                + formats.markdown_plain(
                    "; ".join(
                        f"{k.replace('_', ' ')} {v}"
                        for k, v in value.items()
                        if not isinstance(v, dict | list)
                        and k != "time"  # run times: docs/run.json
                    )
                )
            )
    if card and card_sha and sha != card_sha:
        st.warning(
            f"This card was written for other weights (sha256 {str(card_sha)[:16]}…) than the "
            "registered ones: its figures do not describe this model, so none is shown. Validate "
            "it locally before anyone reads its outlines.",
            icon=":material/warning:",
        )
        return
    if not card:
        st.info(
            "This bundle ships no card (docs/card.json): its accuracy on OncoLens's volumes, or on "
            "yours, has not been measured. Validate it locally before anyone reads its outlines.",
            icon=":material/help:",
        )
        return
    rows = _volume_metric_rows(card.get("metrics") or {})
    if rows:
        n = (card.get("metrics") or {}).get("n_test_volumes")
        st.caption(
            f"Held-out test volumes{f' ({n})' if n else ''}; 95 % intervals bootstrap over volumes. "
            "Small lesions are where a 2 mm grid falls short: read the rows by size."
        )
        st.dataframe(
            pd.DataFrame(rows),
            hide_index=True,
            width="stretch",
            height=35 * (len(rows) + 1) + 3,  # every row in view: no figure hidden behind a scroll
            key=f"vcard_{entry['name']}",
        )
    guard = card.get("input_guard") or {}
    if guard.get("must_refuse"):
        refused = formats.markdown_plain(", ".join(guard["must_refuse"]))
        st.markdown(
            f"**Input guard:** refuses a volume scoring above {guard.get('threshold', '?')} "
            f"(held-out demo volumes reach {guard.get('held_out_max', '?')}); checked to refuse: {refused}."
        )
    if card.get("limitations"):
        st.markdown(
            "**Limitations:**\n"
            + "\n".join(f"- {formats.markdown_plain(v)}" for v in card["limitations"])
        )
