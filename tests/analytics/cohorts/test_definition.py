"""analytics.cohorts.definition: AND/OR groups in words, as parameterised SQL, as JSON; the same patients as
a pandas mask over the cohort's rows."""

from __future__ import annotations

import json

import pytest

from analytics.cohorts import builder as cohorts
from analytics.cohorts.definition import MAX_GROUPS, CohortDefinition, as_definition
from analytics.cohorts.fields import CohortError

OLDER_G3_OR_HER2 = [["age >= 50", "grade = 3"], ["her2_status = positive"]]


def test_groups_read_as_words_with_and_inside_and_or_between():
    d = CohortDefinition.of(OLDER_G3_OR_HER2, "er_status")
    assert d.words() == (
        "(Age at diagnosis ≥ 50 years AND Grade is 3) OR (HER2 status is positive), "
        "compared by ER status"
    )
    assert CohortDefinition.of([["age >= 50", "grade = 3"]]).words() == (
        "Age at diagnosis ≥ 50 years AND Grade is 3"
    )
    assert CohortDefinition().words() == "every patient"


def test_it_compiles_to_constant_sql_with_every_value_a_parameter():
    where, params = CohortDefinition.of(OLDER_G3_OR_HER2).compile()
    assert where == "((age_years >= ?) AND (grade = ?)) OR ((her2_status = ?))"
    assert params == [50.0, "3", "positive"]
    assert CohortDefinition().compile() == ("TRUE", [])


def test_text_that_looks_like_sql_stays_a_value(demo_con):
    hostile = "x') OR 1=1; DROP TABLE person; --"
    d = CohortDefinition.of([[f"agent = {hostile}"]])
    where, params = d.compile()
    assert hostile not in where and params == [hostile]
    with pytest.raises(cohorts.EmptyCohortError):
        cohorts.build_cohort(demo_con, d)
    assert demo_con.execute("SELECT count(*) FROM person").fetchone()[0] == 300
    with pytest.raises(CohortError, match="cannot read the filter"):
        CohortDefinition.of([["age; DROP TABLE person = 1"]])
    with pytest.raises(CohortError, match="unknown field"):
        CohortDefinition.of([["person_id = 1"]])  # a column, but not in the catalogue


def test_or_groups_select_the_same_patients_as_a_pandas_mask(demo_con):
    everyone = cohorts.cohort_patients(demo_con)
    mask = ((everyone["age_years"] >= 50) & (everyone["grade"] == "3")) | (
        everyone["her2_status"] == "positive"
    )
    d = CohortDefinition.of(OLDER_G3_OR_HER2)
    result = cohorts.build_cohort(demo_con, d)
    assert result.n == int(mask.sum())
    # strictly more than either group alone, fewer than everyone: the OR is real
    first = cohorts.build_cohort(demo_con, ["age >= 50", "grade = 3"]).n
    second = cohorts.build_cohort(demo_con, ["her2_status = positive"]).n
    assert max(first, second) < result.n < len(everyone)
    rows = cohorts.cohort_patients(demo_con, d)
    assert sorted(rows["person_id"]) == sorted(everyone.loc[mask, "person_id"])


def test_json_round_trip_and_the_one_group_form():
    d = CohortDefinition.of(OLDER_G3_OR_HER2, "stage")
    back = CohortDefinition.from_json(json.dumps(d.to_json()))
    assert back == d and back.canonical() == d.canonical()
    one = CohortDefinition.from_json({"filters": ["age >= 50"], "group_by": None})
    assert one == CohortDefinition.from_filters(["age >= 50"])
    assert as_definition(["age >= 50"], "stage") == CohortDefinition.from_filters(
        ["age >= 50"], "stage"
    )
    assert as_definition(d, "grade").group_by == "grade"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "is a JSON object"),
        ({"groups": "age >= 50"}, "list of lists"),
        ({"groups": [["age >= 50"]], "where": "1=1"}, "unknown key"),
        ({"groups": [["shoe_size > 3"]]}, "unknown field"),
        ({"groups": [["age >= 50"]], "group_by": "tumour_size"}, "cannot group by"),
        ({"groups": [["age >= 1"]] * (MAX_GROUPS + 1)}, "at most"),
    ],
)
def test_bad_definitions_are_refused_with_a_message(value, message):
    with pytest.raises(CohortError, match=message):
        CohortDefinition.from_json(value)


def test_the_result_carries_the_definition_and_its_json(demo_con):
    d = CohortDefinition.of(OLDER_G3_OR_HER2)
    out = cohorts.build_cohort(demo_con, d).to_json()
    assert out["filters"] is None  # OR groups: see "definition"
    assert out["definition"]["groups"] == OLDER_G3_OR_HER2
    assert cohorts.build_cohort(demo_con, ["age >= 50"]).to_json()["filters"] == ["age >= 50"]
