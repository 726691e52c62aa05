"""The matplotlib fallback of the PDF's figures reads Plotly's typed arrays (numpy data)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures import static


def test_numpy_traces_are_redrawn_not_refused():
    """Plotly keeps numpy y values as base64 "bdata"; read as a list they were two keys long, and
    the fallback failed ("x and y must have same first dimension") whenever kaleido was busy."""
    fig = go.Figure(go.Scatter(x=np.arange(5), y=np.linspace(10.0, 14.0, 5), mode="lines+markers"))
    assert isinstance(fig.to_dict()["data"][0]["y"], dict)  # the encoding this guards against
    assert static._plain(fig.to_dict()["data"][0]["y"]) == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert static.matplotlib_png(fig, 400, 300)[:8] == b"\x89PNG\r\n\x1a\n"
