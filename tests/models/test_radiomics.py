"""models.radiomics: sizes in mm against shapes of known geometry, anisotropic spacing, features table."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from models.radiomics import (
    FEATURE_TABLE,
    _excess_kurtosis,
    _skewness,
    feature_rows,
    largest_component,
    longest_diameter_mm,
    measure_lesion,
)


def _disc(n: int, radius_px: float, centre=None) -> np.ndarray:
    cy, cx = centre or (n / 2, n / 2)
    yy, xx = np.mgrid[:n, :n] + 0.5
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2


@pytest.mark.parametrize("spacing", [0.5, 0.8, 1.0])
def test_disc_diameter_and_area_in_mm(spacing: float) -> None:
    mask = _disc(200, 40)
    pixels = np.where(mask, 100.0, 10.0)
    f = measure_lesion(pixels, mask, (spacing, spacing))
    assert f is not None
    # 80 px across; the Feret over pixel corners adds up to one pixel
    assert 80 * spacing <= f.longest_diameter_mm <= 82 * spacing
    assert f.area_mm2 == pytest.approx(np.pi * (40 * spacing) ** 2, rel=0.02)
    assert f.compactness > 0.85
    assert f.eccentricity < 0.1
    assert f.mean_intensity == pytest.approx(100.0)


def test_anisotropic_spacing_is_respected() -> None:
    mask = np.zeros((100, 100), bool)
    mask[40:50, 10:90] = True  # 10 rows x 80 columns
    d = longest_diameter_mm(mask, (1.0, 0.5))
    # corners span 80 columns x 0.5 mm and 10 rows x 1 mm: diagonal sqrt(40^2 + 10^2)
    assert d == pytest.approx(np.hypot(40, 10), rel=1e-6)
    d_swapped = longest_diameter_mm(mask, (0.5, 1.0))
    assert d_swapped == pytest.approx(np.hypot(80, 5), rel=1e-6)


def test_ellipse_is_eccentric_and_spiculated_shape_less_solid() -> None:
    yy, xx = np.mgrid[:200, :200]
    ellipse = ((yy - 100) / 20) ** 2 + ((xx - 100) / 60) ** 2 <= 1
    e = measure_lesion(np.ones((200, 200)), ellipse, (1.0, 1.0))
    assert e.eccentricity == pytest.approx(np.sqrt(1 - (20 / 60) ** 2), abs=0.02)
    star = _disc(200, 25)
    for angle in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        r = np.arange(25, 70)
        star[(100 + r * np.sin(angle)).astype(int), (100 + r * np.cos(angle)).astype(int)] = True
    s = measure_lesion(np.ones((200, 200)), star, (1.0, 1.0))
    disc = measure_lesion(np.ones((200, 200)), _disc(200, 25), (1.0, 1.0))
    assert s.solidity < disc.solidity - 0.3
    assert s.compactness < disc.compactness


def test_only_the_largest_component_is_measured() -> None:
    mask = _disc(200, 30, (60, 60)) | _disc(200, 5, (170, 170))
    assert largest_component(mask).sum() == _disc(200, 30, (60, 60)).sum()
    f = measure_lesion(np.ones((200, 200)), mask, (1.0, 1.0))
    assert f.longest_diameter_mm < 63  # the small far-away speck does not stretch the diameter


def test_empty_mask_has_no_features() -> None:
    assert measure_lesion(np.ones((10, 10)), np.zeros((10, 10), bool), (1.0, 1.0)) is None


def test_texture_separates_smooth_from_noisy_lesions() -> None:
    rng = np.random.default_rng(0)
    mask = _disc(128, 30)
    smooth = np.where(mask, 100.0, 0.0) + rng.normal(0, 1, (128, 128))
    noisy = np.where(mask, 100.0, 0.0) + rng.normal(0, 30, (128, 128))
    fs, fn = measure_lesion(smooth, mask, (1, 1)), measure_lesion(noisy, mask, (1, 1))
    assert fn.std_intensity > 10 * fs.std_intensity
    assert fn.glcm_homogeneity < fs.glcm_homogeneity or fn.glcm_contrast > fs.glcm_contrast


def test_feature_rows_carry_units_and_drop_sizes_without_spacing() -> None:
    f = measure_lesion(np.ones((64, 64)), _disc(64, 10), (1.0, 1.0))
    rows = feature_rows(f)
    assert len(rows) == len(FEATURE_TABLE)
    assert rows[0]["unit"] == "mm" and rows[0]["value"] == pytest.approx(
        f.longest_diameter_mm, abs=1e-3
    )
    assert all(r["unit"] for r in rows)
    assert not [r for r in feature_rows(f, spacing_known=False) if r["unit"] in ("mm", "mm²")]


def test_skewness_and_kurtosis_match_scipy() -> None:
    """The NumPy moments (scipy.stats no longer imported at start-up) against scipy.stats itself."""
    rng = np.random.default_rng(3)
    for values in (rng.gamma(2.0, 3.0, 500), rng.normal(100, 20, 50), rng.integers(0, 4, 9) * 1.0):
        assert _skewness(values) == pytest.approx(float(stats.skew(values)), abs=1e-12)
        assert _excess_kurtosis(values) == pytest.approx(float(stats.kurtosis(values)), abs=1e-12)
