"""The demo's 3D phantoms: real MNI152 anatomy, lesion compartments and sizes, HU of the thorax."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from models.volumes import phantoms


def test_the_template_is_nilearns_mni152_read_without_a_download() -> None:
    # slow import (~7 s), but it is the independent reference: nilearn's own loader
    from nilearn.datasets import load_mni152_template

    ref = load_mni152_template(resolution=1)
    t1 = phantoms.mni152_t1()[0]
    np.testing.assert_allclose(t1 / 255.0, ref.get_fdata(), atol=1e-6)


@pytest.fixture(scope="module")
def brain_series():
    site = phantoms.brain_lesion(np.random.default_rng(5), 24.0)
    return site, [
        phantoms.brain_mr(np.random.default_rng(k), site, d)
        for k, d in enumerate((24.0, 14.0, 8.0))
    ]


def test_brain_metastasis_has_rim_core_and_oedema_at_the_size_asked(brain_series) -> None:
    _, (big, mid, small) = brain_series
    for vol, asked in ((big, 24.0), (mid, 14.0), (small, 8.0)):
        assert abs(vol.lesion_diameter_mm - asked) <= 2.0 + 0.05 * asked  # a voxel is 2 mm
        measured = phantoms.longest_axial_diameter_mm(np.isin(vol.labels, (1, 3)), vol.spacing_mm)
        assert measured == pytest.approx(vol.lesion_diameter_mm, abs=0.05)  # rounded to 0.1
    assert set(np.unique(big.labels)) == {0, 1, 2, 3}
    assert 1 not in np.unique(small.labels)  # small metastases enhance solidly, no necrosis
    # against the same head, same noise, without the lesion: what each compartment did to the signal
    site, _ = brain_series
    plain = phantoms.brain_mr(np.random.default_rng(0), None, 0).values
    rim, core, oedema = (
        big.values[big.labels == k].mean() / plain[big.labels == k].mean() for k in (3, 1, 2)
    )
    assert rim > 1.3 and core < 0.8 and oedema < 0.9
    ml = big.lesion_volume_ml
    assert ml["2"] > ml["3"] > ml["1"] > 0


def test_a_patients_lesion_stays_in_place_across_time_points(brain_series) -> None:
    _, vols = brain_series
    centres = [np.array(ndimage.center_of_mass(np.isin(v.labels, (1, 3)))) for v in vols]
    for c in centres[1:]:
        assert np.linalg.norm((c - centres[0]) * 2.0) < 3.0  # mm
    volumes = [sum(v.lesion_volume_ml.get(k, 0) for k in ("1", "3")) for v in vols]
    assert volumes == sorted(volumes, reverse=True)


def test_brain_volume_is_seeded_and_lies_in_mni_space(brain_series) -> None:
    site, (big, _, _) = brain_series
    again = phantoms.brain_mr(np.random.default_rng(0), site, 24.0)
    np.testing.assert_array_equal(again.values, big.values)
    assert big.values.shape == (94, 116, 98) and big.spacing_mm == (2.0, 2.0, 2.0)
    # voxel (0, 0, 0) is the template's right-anterior-inferior corner, in LPS
    assert big.origin_lps == (-96.5, -96.5, -71.5)
    assert phantoms.brain_mr(np.random.default_rng(0), None, 0).labels.max() == 0


def test_thorax_ct_in_hounsfield_units_with_its_nodules() -> None:
    rng = np.random.default_rng(3)
    site = phantoms.thorax_lesion(rng, 30.0)
    others = ((phantoms.thorax_lesion(rng, 8.0), 6.0),)
    vol = phantoms.thorax_ct(np.random.default_rng(4), site, 30.0, others)
    body, lungs = phantoms._thorax_masks()
    hu = vol.values
    assert np.median(hu[~body]) == pytest.approx(-1000, abs=15)
    lung_tissue = lungs & (vol.labels == 0)
    assert np.median(hu[lung_tissue]) == pytest.approx(-850, abs=25)
    core = ndimage.binary_erosion(vol.labels == 1)  # the rim is partial volume with the lung
    assert np.median(hu[core]) == pytest.approx(35, abs=20)
    assert (vol.labels == 2).any() and abs(vol.lesion_diameter_mm - 30.0) <= 2.5
    assert hu.max() > 600  # bone
