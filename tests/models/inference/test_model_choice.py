"""One image, one model: ``models.inference.tasks.choose_model`` is the only rule that picks a model.

An MR without BodyPartExamined whose StudyDescription says "MRI BRAIN" must get
the same answer from ``oncolens predict``, from ``oncolens ingest`` (its
``ai_finding`` row) and from the Imaging page, both for the de-identified copy
the store keeps (which has lost the description: the page takes it from the
store) and for an original file on record (which still has it). Before the
rule was written once, predict said "no model", ingest stored no read, and the
page raised on the original file. An MR of the knee gets "no model" from all
three, shown as a message, never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from analytics import store
from dashboard.cli.main import main
from models.dicom.reader import read_dicom
from models.inference.registry import ModelUnavailableError
from models.inference.tasks import ImageFacts, NoModelForImageError, choose_model
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom
from tests.dashboard.app_pages.test_pages import open_page, texts

pytestmark = pytest.mark.filterwarnings("ignore")


def _write_mr(path: Path, patient_id: str, description: str) -> Path:
    """A brain phantom MR (30 mm tumour) with ``description`` and no BodyPartExamined."""
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(23), True, lesion_diameter_mm=30.0),
        path,
        patient_id=patient_id,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20240312",
        study_description=description,
    )
    ds = pydicom.dcmread(path)
    del ds.BodyPartExamined
    ds.save_as(path)
    return path


@pytest.fixture(scope="module")
def clinic(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the demo store and two MRs without a body part, of two of its patients."""
    folder = tmp_path_factory.mktemp("model_choice")
    db = Path(shutil.copy(demo_db, folder / "clinic.duckdb"))
    with store.open_store(db, read_only=True) as con:
        people = con.execute(
            "SELECT person_id, mrn FROM person ORDER BY person_id LIMIT 2"
        ).fetchall()
    cases = {}
    for (person_id, mrn), (case, description) in zip(
        people, (("brain", "MRI BRAIN"), ("knee", "MRI KNEE")), strict=True
    ):
        cases[case] = {
            "person_id": int(person_id),
            "file": _write_mr(folder / case / f"{case}.dcm", str(mrn), description),
        }
    return {"db": db, **cases}


def test_the_rule_reads_the_description_when_the_body_part_is_missing(clinic) -> None:
    image = read_dicom(clinic["brain"]["file"])
    assert image.modality == "MR" and image.body_part is None
    assert image.study_description == "MRI BRAIN"
    assert choose_model(image).name == "brain_mri"
    assert choose_model(image, "brain_mri").name == "brain_mri"
    forced = choose_model(image, "mammography")
    assert forced.task is None and "MG" in forced.reason
    with pytest.raises(NoModelForImageError, match="MG"):
        forced.require()
    unknown = choose_model(image, "nonsense")
    assert unknown.unknown_model and "unknown model" in unknown.reason
    with pytest.raises(ModelUnavailableError, match="unknown model"):
        unknown.require()
    knee = choose_model(read_dicom(clinic["knee"]["file"]))
    assert knee.task is None and "no model for this image" in knee.reason
    # a stored, de-identified copy: the facts the page has (file + the store's description)
    assert choose_model(ImageFacts("MR", None, "MRI BRAIN")).name == "brain_mri"
    assert choose_model(ImageFacts("MG")).name == "mammography"
    assert choose_model(ImageFacts("CT", "HEAD", "CT HEAD")).task is None


def _page_reads(person_id: int) -> list[dict]:
    """What the Imaging page says for each image on record of the patient (the upload entry and the
    viewer's demo volume skipped: the picker's values are 0, 1, ... for the images on record)."""
    at = open_page("imaging", patient=str(person_id))
    assert not at.exception
    shown = []
    options = at.selectbox(key="imaging_source").options
    images = [o for o in options if not o.startswith(("Upload", "Demo volume"))]
    for index in range(len(images)):
        at.selectbox(key="imaging_source").set_value(index).run()
        metrics = {m.label: m.value for m in at.metric}
        shown.append(
            {
                "exception": bool(at.exception),
                "error": texts(at.error),
                "warning": texts(at.warning),
                "most_likely": metrics.get("Most likely"),
                "probability": texts(at.success) + texts(at.warning),
                "caption": texts(at.caption),
            }
        )
    return shown


def _add_original_on_record(db: Path, ingested_sop: str, original: Path) -> None:
    """List the original file too (as the demo's own images are: not de-identified copies)."""
    with store.open_store(db) as con:
        con.execute(
            "INSERT INTO imaging_instance SELECT ?, series_uid, ?, rows, columns, pixel_spacing_mm "
            "FROM imaging_instance WHERE sop_instance_uid = ?",
            [str(pydicom.dcmread(original).SOPInstanceUID), str(original), ingested_sop],
        )


def test_predict_ingest_and_the_page_read_the_brain_mr_alike(clinic, capsys, monkeypatch) -> None:
    case, db = clinic["brain"], clinic["db"]
    # (1) oncolens predict --json
    assert main(["predict", str(case["file"]), "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out.splitlines()[0])
    assert predicted["model"] == "brain_mri", predicted
    assert predicted["label"] == "tumour"
    # (2) oncolens ingest: the stored AI finding
    assert main(["ingest", str(case["file"]), "--db", str(db)]) == 0
    entry = json.loads(capsys.readouterr().out.splitlines()[0])
    assert entry["ai"] is not None, entry["note"]
    with store.open_store(db, read_only=True) as con:
        finding = con.execute(
            "SELECT model_name, model_version, predicted_class, probability FROM ai_finding "
            "WHERE sop_instance_uid = ?",
            [entry["sop_instance_uid"]],
        ).fetchall()
    assert finding == [
        (
            "brain_mri",
            predicted["model_version"],
            predicted["label"],
            pytest.approx(predicted["probabilities"][predicted["label"]], abs=1e-6),
        )
    ]
    # (3) the Imaging page: the stored de-identified copy, and the original file on record
    assert read_dicom(Path(entry["stored_file"])).study_description is None  # de-identified
    _add_original_on_record(db, entry["sop_instance_uid"], case["file"])
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    shown = _page_reads(case["person_id"])
    assert len(shown) == 2
    probability = predicted["probabilities"][predicted["label"]]
    for page in shown:
        assert not page["exception"] and not page["error"], page
        assert page["most_likely"] == predicted["label"].replace("_", " ").capitalize()
        assert f"Probability {probability:.0%}" in page["probability"]  # not calibrated (issue 18)
        assert f"Brain MRI tumour classifier v{predicted['model_version']}" in page["caption"]


def test_an_mr_of_the_knee_gets_no_model_from_all_three(clinic, capsys, monkeypatch) -> None:
    case, db = clinic["knee"], clinic["db"]
    assert main(["predict", str(case["file"]), "--json"]) == 1
    predicted = json.loads(capsys.readouterr().out.splitlines()[0])
    assert "no model for this image" in predicted["error"] and "label" not in predicted
    assert main(["ingest", str(case["file"]), "--db", str(db)]) == 0
    entry = json.loads(capsys.readouterr().out.splitlines()[0])
    assert entry["ai"] is None and entry["note"] == predicted["error"]
    with store.open_store(db, read_only=True) as con:
        assert not con.execute(
            "SELECT count(*) FROM ai_finding WHERE sop_instance_uid = ?",
            [entry["sop_instance_uid"]],
        ).fetchone()[0]
    monkeypatch.setenv("ONCOLENS_DB", str(db))
    (page,) = _page_reads(case["person_id"])
    assert not page["exception"] and not page["error"]
    assert page["most_likely"] is None
    assert "no model for this image" in page["warning"].lower()
    assert "no AI read is given" in page["warning"]


@pytest.mark.parametrize(
    ("facts", "model"),
    [
        (ImageFacts("MR", None, "MRI HEADACHE PROTOCOL"), None),  # a word, not a substring
        (ImageFacts("MR", None, "MRI HEAD/NECK"), None),  # excluded term
        (ImageFacts("MR", None, "mri brain w/wo contrast"), "brain_mri"),
        (ImageFacts("MR", None, "INTRACRANIAL MRA"), "brain_mri"),
        (ImageFacts("MR", None, None), None),  # nothing says brain
        (ImageFacts("MR", "KNEE", "MRI BRAIN"), None),  # the body-part tag wins
        (ImageFacts("MR", " head ", None), "brain_mri"),  # trimmed, case-insensitive
        (ImageFacts(" mg ", None, None), "mammography"),
        (ImageFacts("MR", "BRAINSTEM", None), None),  # exact body part, no prefix match
        (ImageFacts("CT", "BRAIN", "CT BRAIN"), None),
    ],
)
def test_model_choice_follows_the_documented_rule_exactly(facts, model) -> None:
    choice = choose_model(facts)
    assert choice.name == model, choice.reason
    if model is None:
        assert choice.reason  # every "no model" says why
