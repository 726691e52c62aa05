"""The ``oncolens`` command: ``main`` builds the parser from one module per command group, each
registering its own subparsers (as pydicom's ``cli`` does).

Never imports Streamlit; calls the same library functions as the pages.
"""
