"""The viewer component ships built: `make run` and `make test` need no Node, and the wheel carries the bundle."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dashboard.components.viewer import BUILD_DIR, bundle_present
from dashboard.components.viewer.component import CACHED_PAYLOADS, cached_payload
from dashboard.figures.volume import Overlay, payload

ROOT = Path(__file__).resolve().parents[3]


def test_the_built_bundle_is_in_the_package_and_listed_as_package_data():
    assert bundle_present(), f"run `make viewer`: no build in {BUILD_DIR}"
    html = (BUILD_DIR / "index.html").read_text()
    # the page loads only its own bundle: nothing from a CDN, nothing over the network
    assert re.findall(r'src="([^"]+)"', html) == ["./viewer.js"]
    assert "http://" not in html and "https://" not in html
    assert "@niivue/niivue" in (BUILD_DIR / "THIRD_PARTY_LICENSES.txt").read_text()
    config = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+; 3.10 is supported)
    assert '"dashboard.components.viewer" = ["frontend/build/*"]' in config
    assert '"nibabel>=' in config


def test_the_source_and_its_lockfile_are_kept_beside_the_build():
    frontend = BUILD_DIR.parent
    for name in (
        "package.json",
        "package-lock.json",
        "build.mjs",
        "src/index.js",
        "src/index.html",
    ):
        assert (frontend / name).is_file(), name
    assert "viewer:" in (ROOT / "Makefile").read_text()


def test_a_payload_is_built_once_per_content_and_follows_any_change():
    rng = np.random.default_rng(4)
    vol = rng.integers(0, 900, size=(6, 16, 16)).astype(np.float32)
    mask = np.zeros(vol.shape, dtype=bool)
    mask[2:4, 5:9, 5:9] = True
    first = cached_payload(vol, None, (2.0, 1.0, 1.0), [Overlay("m", mask)], modality="MR")
    # the same content again (a page rerun, new array objects): the very same payload
    again = cached_payload(
        vol.copy(), None, (2.0, 1.0, 1.0), [Overlay("m", mask.copy())], modality="MR"
    )
    assert again is first
    # and what it holds is what payload builds
    fresh = payload(vol, None, (2.0, 1.0, 1.0), [Overlay("m", mask)], modality="MR")
    assert fresh.spec == first.spec and fresh.image == first.image
    # any change: one voxel, the overlay's opacity, the spacing, an option
    vol2 = vol.copy()
    vol2[0, 0, 0] += 1
    changed = [
        cached_payload(vol2, None, (2.0, 1.0, 1.0), [Overlay("m", mask)], modality="MR"),
        cached_payload(
            vol, None, (2.0, 1.0, 1.0), [Overlay("m", mask, opacity=0.5)], modality="MR"
        ),
        cached_payload(vol, None, (3.0, 1.0, 1.0), [Overlay("m", mask)], modality="MR"),
        cached_payload(vol, None, (2.0, 1.0, 1.0), [Overlay("m", mask)], modality="CT"),
    ]
    assert len({c.spec["id"] for c in changed} | {first.spec["id"]}) == 5
    # bounded: after CACHED_PAYLOADS other images the first is built again
    for k in range(CACHED_PAYLOADS):
        cached_payload(vol + k + 10, None, (2.0, 1.0, 1.0), modality="MR")
    rebuilt = cached_payload(vol, None, (2.0, 1.0, 1.0), [Overlay("m", mask)], modality="MR")
    assert rebuilt is not first and rebuilt.spec["id"] == first.spec["id"]
