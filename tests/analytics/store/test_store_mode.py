"""The store file is readable by its owner only (issue 24): it holds password hashes, the
pseudonym key, names and MRNs."""

from __future__ import annotations

import os
import stat

from analytics import store


def test_a_new_store_is_owner_only_and_an_old_one_is_tightened(tmp_path) -> None:
    path = tmp_path / "clinic.duckdb"
    store.connect(path, create=True).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)  # a store written before the rule
    with store.open_store(path, read_only=True):
        pass  # a reader changes nothing
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with store.open_store(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
