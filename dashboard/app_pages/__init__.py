"""One thin page per file: widgets in, one library call, render.

Pages may import everything below them in ``dashboard`` and the libraries.
"""
