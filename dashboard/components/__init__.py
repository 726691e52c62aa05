"""Custom Streamlit components with a built web front end: the NiiVue image viewer.

Each component ships its built bundle inside the package (``frontend/build``), so
``make run`` needs no Node; the source and ``make viewer`` rebuild it with npm.
Only the Streamlit side of ``dashboard`` imports this package.
"""
