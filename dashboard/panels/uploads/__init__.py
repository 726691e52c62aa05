"""The Imaging page's uploads of several files or a zip: checked against the open patient,
de-identified, sorted into volumes (one 3D read each) and 2D images, broken series listed.

A subpackage because ``dashboard.panels`` holds its twelve modules already; the single-file
upload stays in the page with ``dashboard.panels.deid``.
"""
