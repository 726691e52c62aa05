"""models.deid.pseudonyms: the one pseudonym function (key first), and the two spellings existing
stores already hold, pinned to the exact bytes they were made from."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pytest

from models.deid import deidentify as deid
from models.deid import pseudonyms
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import build_dataset

KEY = bytes(range(32))


def _hex(message: bytes) -> str:
    return hmac.new(KEY, message, hashlib.sha256).hexdigest()[:16]


def test_store_ids_keep_their_spelling() -> None:
    """What the pages and pseudonymised reports show: ``P-`` + HMAC of ``patient:<id>``."""
    expected = "P-" + _hex(b"patient:42")
    assert pseudonyms.pseudonym(KEY, 42) == expected
    assert pseudonyms.pseudonym(KEY, "42") == pseudonyms.pseudonym(KEY, " 42 ") == expected
    assert pseudonyms.pseudonym(KEY, 42, pseudonyms.STORE_IDS) == expected
    assert pseudonyms.pseudonym(KEY, 43) != expected


def test_dicom_files_keep_their_spelling() -> None:
    """What de-identified DICOM files carry: ``OL-`` + HMAC of ``patient\\x00<original PatientID>``."""
    expected = "OL-" + _hex(b"patient\x00MRN-998877")
    assert pseudonyms.pseudonym(KEY, "MRN-998877", pseudonyms.DICOM_FILES) == expected
    assert pseudonyms.pseudonym(KEY, " MRN-998877 ", pseudonyms.DICOM_FILES) == expected
    ds = build_dataset(
        phantoms.brain_mri(np.random.default_rng(1), False),
        patient_id="MRN-998877",
        patient_name="Doe^Jane",
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        sop_instance_uid="1.2.3.4.5",
        study_date="20240101",
    )
    clean, report = deid.deidentify(ds, KEY)
    assert clean.PatientID == str(clean.PatientName) == report.patient_pseudonym == expected


def test_one_implementation_shared_by_analytics() -> None:
    from analytics.governance import pseudonyms as governance

    assert governance.pseudonym is pseudonyms.pseudonym
    assert governance.keyed_hash is pseudonyms.keyed_hash


def test_the_key_comes_first() -> None:
    with pytest.raises(TypeError):
        pseudonyms.pseudonym("42", KEY)  # type: ignore[arg-type]
