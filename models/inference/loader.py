"""A cached model loader: each registered model loaded once per loader, its failure kept too.

Why a loader object and not ``load_model`` per image: a batch (``oncolens predict`` over a
folder, an ingest, a PACS pull, a tumour-board report) reads many images with a few models;
loading and verifying weights (sha256, ONNX export) once per model, not once per image, is
most of the batch's time. A model that is missing or altered raises the same
``ModelUnavailableError`` for every image that asks for it, so the batch reports an error
per file instead of stopping. The app passes its own process-wide cached loader
(``dashboard.resources.imaging_model``) where this one would load again.
"""

from __future__ import annotations

from collections.abc import Callable

from models.inference.registry import LoadedModel, ModelUnavailableError, load_model

ModelSource = Callable[[str], LoadedModel]
"""Anything that returns the loaded model for a task name (a ``ModelLoader``, the app's cache)."""


class ModelLoader:
    """``loader(name) -> LoadedModel``: loads each model on first use and remembers the outcome."""

    def __init__(self, load: ModelSource = load_model) -> None:
        self._load = load
        self._found: dict[str, LoadedModel | ModelUnavailableError] = {}

    def __call__(self, name: str) -> LoadedModel:
        if name not in self._found:
            try:
                self._found[name] = self._load(name)
            except ModelUnavailableError as exc:
                self._found[name] = exc
        found = self._found[name]
        if isinstance(found, ModelUnavailableError):
            raise found
        return found
