"""Which identifiers of an uploaded file contradict the open patient (checked before de-identification)."""

from __future__ import annotations

import pytest

from analytics.imaging.queries import identity_mismatches

PATIENT = {
    "person_id": "42",
    "mrn": "MRN-0042",
    "given_name": "Anna",
    "family_name": "Berg",
    "birth_date": "19610302",
    "sex": "F",
}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (dict(patient_id="MRN-0042", patient_name="BERG^ANNA", birth_date="19610302", sex="F"), []),
        (dict(patient_id="42", patient_name="", birth_date="", sex=""), []),  # id, nothing else
        (
            dict(patient_id="MRN-0099", patient_name="BERG^ANNA", birth_date="", sex=""),
            ["patient id"],
        ),
        (
            dict(patient_id="", patient_name="BERG^ANNA", birth_date="", sex=""),
            ["patient id missing"],
        ),
        (
            dict(patient_id="MRN-0042", patient_name="LUND^ERIK", birth_date="19500101", sex="M"),
            ["patient name", "birth date", "sex"],
        ),
        (dict(patient_id=" MRN-0042 ", patient_name="berg^anna^^^", birth_date="", sex="O"), []),
    ],
)
def test_identity_mismatches(header, expected) -> None:
    assert identity_mismatches(PATIENT, **header) == expected
