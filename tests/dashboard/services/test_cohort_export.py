"""dashboard.services.cohort_export: a cohort's definition in words, and exports that carry it."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq

from dashboard.services import cohort_export


def _about(**kw):
    base = dict(
        name="Stage II-III over 50",
        filters=["age >= 50", "stage in II,III"],
        group_by="er_status",
        data_cutoff="2026-06-30",
        exported_by="ethics (ethics)",
        exported_at="2026-12-02 23:00 UTC",
        ids="pseudonymised",
        dates="month only (YYYY-MM), exact dates withheld",
        rows=2,
    )
    base.update(kw)
    return cohort_export.header(**base)


def test_filters_read_as_words_joined_by_and():
    words = cohort_export.definition_words(
        ["age >= 50", "stage in II,III", "diagnosis_date between 2020-01-01,2022-12-31"], "stage"
    )
    assert words == (
        "Age at diagnosis ≥ 50 years AND Stage is one of II, III AND Diagnosis date between "
        "2020-01-01 and 2022-12-31, compared by stage"
    )
    assert cohort_export.definition_words([]) == "every patient"


def test_file_names_come_from_the_cohort_name_and_are_never_a_path():
    assert cohort_export.file_stem("Stage II-III over 50") == "stage-ii-iii-over-50"
    assert cohort_export.file_stem("../../etc/passwd") == "etc-passwd"
    assert cohort_export.file_stem("≥≥") == "cohort"


def test_the_csv_starts_with_its_definition_and_reads_back_without_it():
    rows = pd.DataFrame(
        {
            "person_id": ["P-1", "P-2"],
            "diagnosis_date": pd.to_datetime(["2021-03-04", "2022-11-30"]),
        }
    )
    shown = cohort_export.month_only(rows)
    assert shown["diagnosis_date"].tolist() == ["2021-03", "2022-11"]
    data = cohort_export.csv_bytes(shown, _about()).decode()
    head = [line for line in data.splitlines() if line.startswith("#")]
    assert "# cohort: Stage II-III over 50" in head and "# data_cutoff: 2026-06-30" in head
    assert any("Age at diagnosis ≥ 50 years AND Stage is one of II, III" in line for line in head)
    assert any(line.startswith("# dates: month only") for line in head)
    assert any(
        '--filter "age >= 50" --filter "stage in II,III" --group-by er_status' in line
        for line in head
    )
    back = pd.read_csv(io.StringIO(data), comment="#")
    assert back["person_id"].tolist() == ["P-1", "P-2"]


def test_the_parquet_file_carries_the_same_header_as_metadata():
    import json

    rows = pd.DataFrame({"person_id": ["P-1"], "rfs_days": [100]})
    table = pq.read_table(io.BytesIO(cohort_export.parquet_bytes(rows, _about(rows=1))))
    about = json.loads(table.schema.metadata[cohort_export.METADATA_KEY])
    assert about["cohort"] == "Stage II-III over 50" and about["patients"] == 1
    assert table.to_pandas()["person_id"].tolist() == ["P-1"]
