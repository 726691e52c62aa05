"""Everything that looks at pixels: DICOM I/O, de-identification, the AI read and its model
registry, saliency and its quality, training on synthetic data, the PACS client.

Never imports ``analytics``, ``dashboard`` or ``streamlit``.
"""
