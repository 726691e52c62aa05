"""The in-browser image viewer: NiiVue (WebGL2) in a Streamlit component, for volumes and 2D images.

``volume_viewer`` shows a (z, y, x) volume (a 2D image is a one-slice volume) with
axial, coronal, sagittal and multiplanar views, slice scrolling (wheel, arrow
keys), mouse window/level and presets, a crosshair, a caliper in mm, orientation
labels (only where the orientation is known) and overlays (the AI outline, the
saliency map) with toggles and opacity. All of it runs in the browser: nothing
goes back to Python while the user scrolls or windows. Docs: docs/imaging.md.
"""

from dashboard.components.viewer.component import (
    BUILD_DIR,
    ViewerUnavailableError,
    bundle_present,
    volume_viewer,
)
from dashboard.figures.volume import Overlay, ViewerInputError

__all__ = [
    "BUILD_DIR",
    "Overlay",
    "ViewerInputError",
    "ViewerUnavailableError",
    "bundle_present",
    "volume_viewer",
]
