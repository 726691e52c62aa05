"""The viewer component ships built: `make run` and `make test` need no Node, and the wheel carries the bundle."""

from __future__ import annotations

import re
from pathlib import Path

from dashboard.components.viewer import BUILD_DIR, bundle_present

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
