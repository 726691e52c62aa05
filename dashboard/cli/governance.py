"""``oncolens users``, ``oncolens audit`` and ``oncolens quality``: accounts, the audit chain and the
store's data-quality checks from the shell.

Passwords are read from a prompt (twice, not echoed) or, for scripts, from one
line of standard input (``--password-stdin``); never from an argument, which
would land in the shell history and the process list.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from dashboard.cli.common import CliError, SubParsers, actor, add_command, db_arg, db_path


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CliError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise CliError(
            "no terminal to ask for the password: pass it on standard input with --password-stdin"
        )
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise CliError("the two passwords differ; nothing was changed")
    return first


def add_subparsers(subparsers: SubParsers) -> None:
    """``users`` (``add``, ``remove``, ``role``, ``deactivate``, ``activate``, ``list``), ``audit``, ``quality``."""
    # the roles only (analytics.governance's package): the users module would load the store
    from analytics.governance import ROLES

    users = add_command(subparsers, "users", "manage local accounts (sign-in and roles)", cmd_users)
    audit_p = add_command(subparsers, "audit", "verify the hash-chained audit trail", cmd_audit)
    sub = users.add_subparsers(dest="users_action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account", description="create an account")
    add.add_argument("username", metavar="NAME")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--email", help="single sign-on identity mapped to this account")
    add.add_argument(
        "--sso-only", action="store_true", help="no password: sign in only through single sign-on"
    )
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from one line of stdin"
    )
    db_arg(add)
    remove = sub.add_parser("remove", help="delete an account", description="delete an account")
    remove.add_argument("username", metavar="NAME")
    db_arg(remove)
    role = sub.add_parser(
        "role", help="give an account another role", description="give an account another role"
    )
    role.add_argument("username", metavar="NAME")
    role.add_argument("--role", required=True, choices=ROLES)
    db_arg(role)
    for verb, what in (
        ("deactivate", "stop an account from signing in (kept for the audit trail)"),
        ("activate", "let a deactivated account sign in again"),
    ):
        toggle = sub.add_parser(verb, help=what, description=what)
        toggle.add_argument("username", metavar="NAME")
        db_arg(toggle)
    listing = sub.add_parser(
        "list", help="list accounts (never passwords)", description="list accounts"
    )
    listing.add_argument("--json", action="store_true")
    db_arg(listing)

    audit_p.add_argument(
        "action",
        choices=["verify", "anchor"],
        help="verify: walk the chain (and check --anchor); anchor: record the head hash outside the store",
    )
    audit_p.add_argument(
        "--json", action="store_true", help="print a JSON object (with the chain's head hash)"
    )
    audit_p.add_argument(
        "--anchor",
        type=Path,
        metavar="FILE",
        help="verify: check every anchor in FILE (one JSON object a line, as `audit anchor --out` writes)",
    )
    audit_p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="anchor: append the anchor to FILE (keep it outside the store's reach); default: print it",
    )
    db_arg(audit_p)

    quality = add_command(
        subparsers,
        "quality",
        "run the store's data-quality checks (completeness, conformance, plausibility)",
        cmd_quality,
    )
    quality.add_argument(
        "--json", action="store_true", help="one JSON object per check (JSON Lines)"
    )
    quality.add_argument(
        "--sample",
        type=int,
        default=5,
        metavar="N",
        help="failing row keys shown per check (pseudonymised patients; default 5)",
    )
    db_arg(quality)


def cmd_quality(args: argparse.Namespace) -> int:
    """Every check of ``analytics.governance.quality``; exit 1 when any check fails."""
    # lazy: `oncolens --help` and the other commands never load it
    from analytics import store

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.governance import quality

    if args.sample < 0:
        raise CliError("--sample must be 0 or more")
    with store.open_store(db_path(args), read_only=True) as con:
        results = quality.run_checks(con, sample=args.sample)
    if args.json:
        for r in results:
            print(json.dumps(r.to_json()), flush=True)
    else:
        for r in results:
            verdict = {True: "pass", False: "FAIL", None: "not run"}[r.passed]
            print(
                f"{verdict:<8} {r.category:<13} {r.name:<32} {r.n_failed:>7} of {r.n_checked:<9} "
                f"({r.pct:.2f} %, allowed {r.threshold_pct:g} %)"
            )
            for row in r.sample:
                print(f"         {row['person'] or '-'}  {row['row']}")
        failed = sum(r.passed is False for r in results)
        print(f"{len(results) - failed} of {len(results)} checks pass.")
    return 1 if any(r.passed is False for r in results) else 0


def cmd_users(args: argparse.Namespace) -> int:
    from analytics import store  # lazy: `oncolens --help` and the other commands never load it
    from analytics.governance import (  # lazy: `oncolens --help` and the other commands never load it
        users,
    )

    db = db_path(args)
    action = args.users_action
    if action == "list":
        with store.open_store(db, read_only=True) as con:
            try:
                accounts = users.list_users(con)
            except Exception as exc:  # a store older than schema 3 has no accounts table yet
                if "app_user" not in str(exc):
                    raise
                accounts = []
        rows: list[dict[str, Any]] = [
            {
                "username": u.username,
                "role": u.role,
                "email": u.email,
                "sign_in": ("password" if u.has_password else "") + ("+sso" if u.email else ""),
                "active": u.active,
            }
            for u in accounts
        ]
        if args.json:
            for row in rows:
                print(json.dumps(row))
        elif not rows:
            print("No accounts. Add one with: oncolens users add NAME --role ROLE")
        else:
            for row in rows:
                state = "" if row["active"] else "  (deactivated)"
                print(
                    f"{row['username']:<24} {row['role']:<13} {row['sign_in'].lstrip('+'):<13} "
                    f"{row['email'] or ''}{state}"
                )
        return 0
    try:
        if action == "remove":
            users.delete_account(db, args.username, actor=actor())
            print(f"Removed {users.normalise_username(args.username)}.")
            return 0
        if action == "role":
            user = users.change_role(db, args.username, args.role, actor=actor())
            print(f"{user.username} now has the role {user.role}.")
            return 0
        if action in ("deactivate", "activate"):
            user = users.set_active(db, args.username, action == "activate", actor=actor())
            print(f"{'Activated' if user.active else 'Deactivated'} {user.username}.")
            return 0
        # add
        if args.sso_only and not args.email:
            raise CliError("--sso-only needs --email (the identity single sign-on reports)")
        name = users.check_username(args.username)
        password = None if args.sso_only else _read_password(args)
        if password is not None:
            users.check_password(password, name)
        user = users.create_account(
            db, name, args.role, password=password, email=args.email, actor=actor()
        )
    except users.UserError as exc:
        raise CliError(str(exc)) from None
    print(f"Added {user.username} ({user.role}).")
    return 0


def _read_anchors(path: Path) -> list:
    """Every anchor in an anchor file (JSON Lines); a missing or malformed file is one clear error."""
    # lazy: `oncolens --help` and the other commands never load it
    from analytics.governance import audit

    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the anchor file {path}: {exc}") from None
    if not lines:
        raise CliError(f"the anchor file {path} holds no anchor")
    anchors = []
    for number, line in enumerate(lines, 1):
        try:
            anchors.append(audit.Anchor.from_json(json.loads(line)))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise CliError(f"{path}, line {number}: not an anchor ({exc})") from None
    return anchors


def cmd_audit(args: argparse.Namespace) -> int:
    # lazy: `oncolens --help` and the other commands never load it
    from analytics import store

    # lazy: `oncolens --help` and the other commands never load it
    from analytics.governance import audit

    db = db_path(args)
    if args.action == "anchor":
        if args.anchor is not None:
            raise CliError("--anchor is for `audit verify`; `audit anchor` takes --out FILE")
        with store.open_store(db) as con:
            result, mark = audit.anchor(con)
        if mark is None:
            raise CliError(f"not anchored: the audit trail is broken ({result.problem})")
        line = json.dumps(mark.to_json())
        if args.out is None:
            print(line)
            return 0
        try:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            raise CliError(f"cannot write the anchor to {args.out}: {exc}") from None
        print(f"anchored {mark.events} events (head {mark.head[:16]}...) in {args.out}")
        return 0
    if args.out is not None:
        raise CliError("--out is for `audit anchor`")
    anchors = _read_anchors(args.anchor) if args.anchor is not None else []
    # read-only: a verify never migrates or seals the store it checks (audit.open_for_verify)
    with audit.open_for_verify(db) as con:
        result = audit.verify(con)
        anchor_problems = [
            f"anchor of {a.events} events: {problem}"
            for a in anchors
            if (problem := audit.check_anchor(con, a)) is not None
        ]
    ok = result.ok and not anchor_problems
    if args.json:
        print(
            json.dumps(
                {
                    "ok": ok,
                    "events": result.events,
                    "head": result.head_hash,
                    "first_bad_event": result.first_bad,
                    "problem": result.problem or (anchor_problems[0] if anchor_problems else None),
                    "anchors_checked": len(anchors),
                    "unsealed": result.unsealed,
                }
            )
        )
    elif ok:
        checked = f"; {len(anchors)} anchor(s) hold" if anchors else ""
        print(f"ok, {result.events} events{checked}")
    elif result.unsealed:
        print(f"audit trail not verifiable (not broken): {result.problem}")
    elif not result.ok:
        where = f"event {result.first_bad}" if result.first_bad is not None else "the chain"
        print(f"audit trail broken at {where}: {result.problem}")
    else:
        print(f"audit trail does not match its anchor: {anchor_problems[0]}")
    return 0 if ok else (2 if result.unsealed else 1)  # 2: nothing to verify; 1: it failed


def demo_accounts(db: Path) -> list[dict]:
    """Create the demo's one account per role; returns name, role and the (published) demo password."""
    # lazy: `oncolens --help` and the other commands never load it
    from analytics.governance import users

    made = {u.username: u.role for u in users.add_demo_accounts(db)}
    return [
        {"username": n, "role": r, "password": p} for n, r, p in users.DEMO_ACCOUNTS if n in made
    ]


def print_demo_accounts(accounts: list[dict]) -> None:
    print(
        "Sign in with one of these demo accounts (DEMO ONLY: the passwords are published; remove the "
        "accounts with `oncolens users remove NAME` before any real use):"
    )
    for a in accounts:
        print(f"  {a['username']:<11} password {a['password']:<16} role {a['role']}")
