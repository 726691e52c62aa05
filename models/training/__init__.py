"""Training and evaluation on synthetic data: the phantom generators (``synthetic``, as MONAI's
``monai/data/synthetic.py``) and their DICOM writer, the training script, metrics with bootstrap
intervals, fresh-phantom validation and subgroup cases.
"""
