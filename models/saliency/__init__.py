"""Saliency: Captum attributions behind one signature (``methods``) and how far each map can be
trusted (``quality``: pointing game, deletion/insertion, randomisation check).
"""
