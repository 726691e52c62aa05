"""The process ``oncolens serve`` runs: the sign-in page's imports and checks, then Streamlit.

Why (issue 23, "landing on a cold server"): Streamlit runs ``app.py`` only when the first browser
connects, so the first visitor of a freshly started server waited for the app's own imports
(pandas, DuckDB, the store, the pages' shared modules) and for the sign-in page's check of the
four demo accounts (four Argon2 verifications, deliberately slow: 0.9 CPU-s quiet, seconds on
two busy cores). Here both are done before Streamlit listens, so the server answers its health
check once it can draw the sign-in form at once; its start takes that much longer, which nobody
waits on in front of a page. The demo accounts' answer is remembered by
``users.demo_accounts_in_use`` (per stored hash), not by a Streamlit cache, which does not exist
yet.

What the other pages need (torch, SciPy, pydicom, Plotly's figures) is not imported here: it
would delay every start by seconds for pages a visitor may never open; the app imports it in the
background once the sign-in form is drawn (``resources.warm_up``), as before.

Then Streamlit's own command line runs in this process, exactly as ``python -m streamlit`` would
(its arguments are this module's: ``python -m dashboard.server run dashboard/app.py ...``).
``ONCOLENS_DB`` names the store, as for the app.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def preload(db: Path | None) -> list[str]:
    """Import the sign-in page's modules and check the demo accounts of ``db``; returns what it did.

    Never raises for the store: a missing, busy or foreign store is the sign-in page's to explain
    (it reads it again), so a store problem here only skips the accounts' check.
    """
    # Streamlit warns once per cached function whose decorator runs before its runtime exists ("No
    # runtime found"; it sets its loggers' levels as it creates them): expected here, so quieted
    logging.disable(logging.WARNING)
    try:
        # lazy: imported with the warnings quieted; these are what app.py and the sign-in page
        # import (the point of this module is to import them before the first visitor: start-up)
        from analytics import store  # (the same)
        from analytics.governance import users  # (the same)
        from dashboard import resources  # noqa: F401 - imported for app.py (the same)
        from dashboard.session import auth, landing, state  # noqa: F401 - (the same)
    finally:
        logging.disable(logging.NOTSET)
    done = ["imports"]
    if db is None:
        return done
    try:
        with store.open_store(db, read_only=True, wait_s=10) as con:
            users.demo_accounts_in_use(con)
        done.append("demo accounts")
    except store.StoreError:
        pass
    return done


def main(argv: list[str]) -> int:
    """``preload`` the store of ``$ONCOLENS_DB``, then Streamlit's command line with ``argv``."""
    db = os.environ.get("ONCOLENS_DB")
    preload(Path(db) if db else None)
    # lazy: Streamlit's command line only once the preload is done (its start is timed apart)
    from streamlit.web import cli

    sys.argv = ["streamlit", *argv]
    cli.main(prog_name="streamlit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
