"""Window/level presets and the image-with-overlay figure of the Imaging page.

Why presets per modality: a radiologist reads CT in fixed windows (soft
tissue, lung, bone, brain) and MR/MG by the header's window or by the image's
own range; offering the right few saves a dozen slider moves per read. The
first preset is always the file's own window (VOI LUT or Window Center/Width),
because that is what the acquiring site chose.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from skimage import measure

from dashboard.figures import common  # noqa: F401 - sets the house template as the default
from models.dicom.reader import DicomImage

CT_PRESETS = {
    "Soft tissue (40/400)": (40.0, 400.0),
    "Lung (-600/1500)": (-600.0, 1500.0),
    "Bone (400/1800)": (400.0, 1800.0),
    "Brain (40/80)": (40.0, 80.0),
}
FILE_WINDOW = "File window"
MAX_DISPLAY_SIDE = 1024  # pixels sent to the browser; measurement always uses the full image
CONTOUR_COLOUR = "#E69F00"


def presets(image: DicomImage) -> dict[str, tuple[float, float] | None]:
    """Preset name -> (centre, width); None means the file's own VOI (LUT or window)."""
    out: dict[str, tuple[float, float] | None] = {FILE_WINDOW: None}
    if image.modality.upper() == "CT":
        out.update(CT_PRESETS)
        return out
    finite = image.pixels[np.isfinite(image.pixels)]
    if finite.size:
        lo, hi = np.percentile(finite, [0.5, 99.5])
        if hi > lo:
            out["Full range (0.5–99.5 %)"] = ((lo + hi) / 2, hi - lo)
            name = "Dense tissue" if image.modality.upper() == "MG" else "High contrast"
            # the brighter half of the range: dense tissue in MG, enhancement in T1 post-contrast MR
            mid = lo + 0.55 * (hi - lo)
            out[f"{name} (upper half)"] = ((mid + hi) / 2, hi - mid)
    return out


def slider_range(image: DicomImage) -> tuple[float, float]:
    """Range of the centre slider: the image's values with a margin."""
    finite = image.pixels[np.isfinite(image.pixels)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    margin = 0.1 * (hi - lo)
    return lo - margin, hi + margin


def nice_scale_length_mm(field_width_mm: float) -> float:
    """A round scale-bar length (1, 2, 5 x 10^k mm) near a fifth of the field width."""
    target = max(field_width_mm / 5, 1e-3)
    k = math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * 10**k <= target:
            return float(step * 10**k)
    return float(10**k)


def outline_path(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every outline of ``mask`` as one path: (rows, cols) in pixel coordinates (a pixel's centre at
    its index + 0.5), NaN between two outlines, so that one Plotly trace draws them all.

    Why one trace (issue 23): a trace per outline made a speckled saliency map's top-k contour
    120-170 traces; Plotly validated each on the server (0.1-0.6 s a figure) and the browser drew
    each as its own SVG group. With NaN gaps one trace draws the same lines.
    """
    parts = measure.find_contours(np.pad(np.asarray(mask).astype(np.uint8), 1), 0.5)
    if not parts:
        return np.empty(0), np.empty(0)
    gap = np.full((1, 2), np.nan)
    path = np.concatenate([piece for part in parts for piece in (part - 0.5, gap)][:-1])
    return path[:, 0], path[:, 1]


def _png_data_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=False, compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_figure(
    shown: np.ndarray,
    spacing_mm: tuple[float, float] | None,
    mask: np.ndarray | None = None,
    truth_mask: np.ndarray | None = None,
    height: int = 620,
    mask_style: tuple[str, str] = (CONTOUR_COLOUR, "solid"),
) -> go.Figure:
    """The image in mm (or pixels without spacing), a scale bar, and lesion contours.

    ``shown`` is the uint8 display image at full resolution; it is subsampled
    for the browser to at most ``MAX_DISPLAY_SIDE`` pixels a side, but axes and
    contours stay in full-resolution coordinates, so what the scale bar says is
    true of the original image. ``mask_style``: (colour, dash) of the AI outline
    (the saliency figure draws it white and dashed, to stand out on the heat map).
    """
    rows, cols = shown.shape[:2]
    step = max(1, math.ceil(max(rows, cols) / MAX_DISPLAY_SIDE))
    dy, dx = spacing_mm if spacing_mm else (1.0, 1.0)
    unit = "mm" if spacing_mm else "pixels"
    fig = go.Figure(
        go.Image(
            source=_png_data_uri(np.ascontiguousarray(shown[::step, ::step])),
            x0=dx * step / 2,
            y0=dy * step / 2,
            dx=dx * step,
            dy=dy * step,
            hoverinfo="skip",
        )
    )
    for m, colour, name, dash in (
        (mask, mask_style[0], "AI lesion outline", mask_style[1]),
        (truth_mask, "#56B4E9", "Ground-truth outline (phantom)", "dot"),
    ):
        if m is None or not np.any(m):
            continue
        r, c = outline_path(m)
        fig.add_trace(
            go.Scatter(
                x=c * dx,
                y=r * dy,
                mode="lines",
                line={"color": colour, "width": 2, "dash": dash},
                name=name,
                legendgroup=name,
                showlegend=True,
                hoverinfo="name",
            )
        )
    width = cols * dx
    if spacing_mm:
        bar = nice_scale_length_mm(width)
        x0, y = 0.05 * width, rows * dy * 0.95
        fig.add_shape(
            type="line", x0=x0, x1=x0 + bar, y0=y, y1=y, line={"color": "white", "width": 4}
        )
        fig.add_annotation(
            x=x0 + bar / 2,
            y=y,
            yshift=12,
            text=f"{bar:g} mm",
            showarrow=False,
            font={"color": "white", "size": 13},
        )
    fig.update_xaxes(
        title=f"x ({unit})", range=[0, width], showgrid=False, zeroline=False, constrain="domain"
    )
    fig.update_yaxes(
        title=f"y ({unit})",
        range=[rows * dy, 0],
        showgrid=False,
        zeroline=False,
        scaleanchor="x",
        scaleratio=1,
        constrain="domain",
    )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        # no template="plotly_white" here: it is the default (``common``), applied once when the
        # figure is serialised; naming it copied and re-validated it (40-60 ms a figure, issue 23)
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0.0},
        dragmode="pan",
    )
    return fig
