"""Streamlit's floor for the viewer benchmark (``bench/bench_viewer.py`` serves it): one line of text.

Page, websocket, script run and first element with no viewer: the viewer's first render
cannot come sooner. Streamlit's "magic" writes the bare expression below to the page
(only ``dashboard`` imports streamlit).
"""

from bench.bench_viewer import EMPTY_MARK

EMPTY_MARK  # noqa: B018  # written to the page by Streamlit's magic
