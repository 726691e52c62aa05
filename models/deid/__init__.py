"""De-identification: DICOM PS3.15 Annex E's Basic Application Level Confidentiality Profile (the
table, as data) and the code that applies it.
"""
