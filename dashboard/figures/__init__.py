"""Pure figure builders: data in, a Plotly figure (or PNG bytes for print) out, no Streamlit, so
tests and the PDF call them directly; and ``formats``, the one way every page, the PDF and the CLI
write a percentage, an interval, a size, a date or a missing value.

May import ``analytics`` and ``models`` for their result types only.
"""
