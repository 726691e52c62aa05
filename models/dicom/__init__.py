"""DICOM I/O: reading one image frame with its metadata, and writing the AI read back as DICOM
(Segmentation, TID 1500 SR).
"""
