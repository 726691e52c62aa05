"""Saliency: Captum attributions behind one signature (``methods``) and how far each map can be
trusted (``quality``: pointing game, deletion/insertion, randomisation check; ``verdict``); in 3D,
``volume`` (Grad-CAM and integrated gradients of a 3D model's lesion, ``oncolens explain SERIES``)
and ``volume_quality`` (the same checks on held-out volumes, into the 3D card).
"""
