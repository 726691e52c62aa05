"""Demo volumes: the clinic's own brain-MR and CT patients, at their recorded sizes, with the truth."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from analytics import store
from models.volumes import read_volumes
from models.volumes.geometry import nifti_layout
from sample_data.demo_imaging import BRAIN_CONCEPT
from sample_data.demo_volumes import MANIFEST_NAME, DemoVolumesError, write_demo_volumes

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def written(demo_db, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "volumes"
    return write_demo_volumes(demo_db, root, patients=1)


def test_volumes_are_the_record_s_studies_at_the_record_s_sizes(demo_db, written) -> None:
    studies = written.studies
    assert {s.modality for s in studies} == {"MR", "CT"}
    with store.open_store(demo_db, read_only=True) as con:
        for s in studies:
            concept = BRAIN_CONCEPT if s.modality == "MR" else "lesion_longest_diameter"
            rows = con.execute(
                "SELECT p.mrn, st.modality, st.study_date, m.value FROM imaging_study st"
                " JOIN person p USING (person_id) JOIN measurement m ON m.study_uid = st.study_uid"
                " WHERE st.study_uid = ? AND m.concept = ? AND m.source = 'radiology'",
                [s.study_uid, concept],
            ).fetchall()
            assert rows == [(s.patient_id, s.modality, s.study_date, pytest.approx(s.recorded_mm))]
            assert abs(s.drawn_mm - s.recorded_mm) <= 2.5 + 0.05 * s.recorded_mm
            if s.modality == "MR":  # only patients with a brain MR in the record
                assert (
                    con.execute(
                        "SELECT count(*) FROM measurement WHERE person_id = ? AND concept = ?",
                        [s.person_id, BRAIN_CONCEPT],
                    ).fetchall()[0][0]
                    >= 1
                )


def test_series_read_back_as_volumes_with_their_truth_aligned(written) -> None:
    result = read_volumes([written.volumes_dir / "dicom"])
    assert result.ok and not result.skipped
    by_uid = {v.series_instance_uid: v for v in result.volumes}
    assert set(by_uid) == {s.series_uid for s in written.studies}
    for s in written.studies:
        vol = by_uid[s.series_uid]
        assert vol.patient_id == s.patient_id and vol.study_instance_uid == s.study_uid
        assert vol.modality == s.modality and vol.axes == "SPL"
        img = nib.load(s.labels_path)
        labels = np.asarray(img.dataobj)
        expected_data, expected_affine = nifti_layout(np.zeros(vol.shape), vol.affine_lps)
        assert labels.shape == expected_data.shape
        np.testing.assert_allclose(img.affine, expected_affine, atol=1e-3)
        lesion = np.isin(labels, (1, 3)) if s.modality == "MR" else labels == 1
        ml = lesion.sum() * np.prod(vol.spacing_mm) / 1000
        assert ml == pytest.approx(
            sum(s.volume_ml.get(k, 0) for k in (("1", "3") if s.modality == "MR" else ("1",))),
            abs=0.01,
        )
        # the truth sits on the bright lesion: MR enhancing rim / CT soft tissue in the lung
        inside = vol.pixels[np.transpose(labels, (2, 1, 0)) == (3 if s.modality == "MR" else 1)]
        assert inside.mean() > (900 if s.modality == "MR" else -300)


def test_a_lesion_is_tracked_in_place_and_its_size_follows_the_course(written) -> None:
    for modality in ("MR", "CT"):
        series = sorted(
            (s for s in written.studies if s.modality == modality), key=lambda s: s.study_date
        )
        assert len(series) >= 2
        centres = []
        for s in series:
            labels = np.asarray(nib.load(s.labels_path).dataobj)
            lesion = np.isin(labels, (1, 3)) if modality == "MR" else labels == 1
            centres.append(nib.load(s.labels_path).affine @ [*ndimage.center_of_mass(lesion), 1])
        for c in centres[1:]:
            assert np.linalg.norm(c[:3] - centres[0][:3]) < 4.0  # mm
        recorded = [s.recorded_mm for s in series]
        drawn = [s.drawn_mm for s in series]
        assert np.corrcoef(recorded, drawn)[0, 1] > 0.9 or len(set(recorded)) == 1


def test_manifest_rerun_and_a_foreign_folder(demo_db, written, tmp_path) -> None:
    manifest = json.loads((written.volumes_dir / MANIFEST_NAME).read_text())
    assert len(manifest["series"]) == len(written.studies)
    assert manifest["labels"]["MR"]["3"] == "enhancing rim"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    with pytest.raises(DemoVolumesError, match="not written by"):
        write_demo_volumes(demo_db, foreign, patients=1)
    assert (foreign / "thesis.docx").read_text() == "precious"
    again = write_demo_volumes(demo_db, written.volumes_dir, patients=0)
    assert again.studies == () and not (written.volumes_dir / "dicom").exists()
