"""What the Imaging page's pickers offer: a 2D image once each, a volume series once (issue 21)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from analytics import store
from analytics.imaging.queries import offered, recent_images, series_read_in_3d


def _images() -> pd.DataFrame:
    rows = [("s1", f"/a/{k}.dcm") for k in range(4)] + [("mg", "/b/0.dcm")]
    rows += [("s2", f"/c/{k}.dcm") for k in range(3)]
    return pd.DataFrame(
        {
            "series_uid": [r[0] for r in rows],
            "file_path": [r[1] for r in rows],
            "modality": ["MR"] * 4 + ["MG"] + ["CT"] * 3,
        }
    )


def test_a_volume_series_is_offered_once_with_its_size_and_2d_images_as_they_are() -> None:
    out = offered(_images(), {"s1"})
    assert list(out["series_uid"]) == ["s1", "mg", "s2", "s2", "s2"]
    assert list(out["is_volume"]) == [True, False, False, False, False]
    assert list(out["images"]) == [4, 1, 1, 1, 1]
    assert out.loc[0, "file_path"] == "/a/0.dcm"  # its first file, in the list's order
    both = offered(_images(), {"s1", "s2"})
    assert list(both["series_uid"]) == ["s1", "mg", "s2"] and list(both["images"]) == [4, 1, 3]


def test_nothing_to_offer_stays_empty_with_the_columns() -> None:
    out = offered(_images().iloc[:0], set())
    assert out.empty and {"is_volume", "images"} <= set(out.columns)


def _store(tmp_path) -> duckdb.DuckDBPyConnection:
    con = store.connect(tmp_path / "s.duckdb", create=True)
    for k, (date, n) in enumerate(((dt.date(2024, 1, 1), 1), (dt.date(2024, 6, 1), 40))):
        con.execute(
            "INSERT INTO imaging_study (study_uid, person_id, study_date, modality) VALUES (?, 1, ?, 'MR')",
            [f"st{k}", date],
        )
        con.execute(
            "INSERT INTO imaging_series VALUES (?, ?, 'MR', 'BRAIN', NULL)", [f"se{k}", f"st{k}"]
        )
        for i in range(n):
            con.execute(
                "INSERT INTO imaging_instance VALUES (?, ?, ?, 64, 64, 1.0)",
                [f"i{k}.{i}", f"se{k}", f"/x/{k}/{i}.dcm"],
            )
    return con


def test_the_clinic_list_counts_series_so_a_volume_does_not_crowd_out_older_studies(
    tmp_path,
) -> None:
    con = _store(tmp_path)
    try:
        rows = recent_images(con, 2)
        assert set(rows["series_uid"]) == {"se0", "se1"} and len(rows) == 41
        assert set(recent_images(con, 1)["series_uid"]) == {"se1"}
        assert series_read_in_3d(con, ["se0", "se1"]) == set()  # no 3D read on record
        assert list(offered(rows, {"se1"})["series_uid"]) == ["se1", "se0"]
    finally:
        con.close()
