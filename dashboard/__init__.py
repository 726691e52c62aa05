"""User interfaces only: the Streamlit app and the ``oncolens`` command line.

Layers, top to bottom (import-linter checks them): ``app`` -> ``app_pages`` -> ``panels`` ->
``session`` -> ``resources`` | ``cli`` -> ``services`` -> ``figures``. Only the Streamlit side
(app, pages, panels, session, resources) imports streamlit.
"""
