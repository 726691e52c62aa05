"""Pure figure builders: data in, a Plotly figure (or PNG bytes for print) out, no Streamlit, so
tests and the PDF call them directly.

May import ``analytics`` and ``models`` for their result types only.
"""
