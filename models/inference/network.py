"""The imaging network: one small encoder with a classification head and a lesion-mask head.

Why one network with two heads: the AI read needs both a label and a lesion
outline (for the RECIST diameter and the contour on screen), and sharing the
encoder keeps the whole read to a few milliseconds on two CPU cores. The
segmentation head also gives saliency methods a second, independent answer to
"where is the lesion" to compare against.

Shapes: input (N, 1, S, S) float32 with S = ``INPUT_SIZE``; outputs class
logits (N, n_classes) and mask logits (N, 1, S/2, S/2): half resolution is
enough for an outline at 1.6 mm per mask pixel and halves the decoder's cost.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from models.inference.preprocess import INPUT_SIZE  # one definition, beside the preprocessing

__all__ = ["FEATURE_SIZE", "INPUT_SIZE", "LesionNet", "count_parameters"]

FEATURE_SIZE = 13 * 12 + 2  # pooled width of LesionNet(width=12): 8w + w + 4w + 2 mask statistics


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


class LesionNet(nn.Module):
    """A compact U-Net-style encoder/decoder (about 0.1 M parameters).

    ``last_conv`` is the last convolutional block of the encoder, the layer
    Grad-CAM attributes to. ``temperature`` is fitted after training on a
    validation split (Guo et al. 2017) and divides the class logits, so
    ``predict_proba`` returns calibrated probabilities.
    """

    temperature: torch.Tensor  # a registered buffer (nn.Module.__getattr__ is untyped)
    # ONNX Runtime's forward pass on CPU, attached by models.inference.registry.load_model;
    # absent on networks built elsewhere (readers use getattr(network, "onnx_forward", None))
    onnx_forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None
    # the temperature fitted in training, kept by the registry where the card does not apply it
    # (the buffer is then 1); written beside the cached ONNX graph (models.inference.onnx_runner)
    fitted_temperature: float

    def __init__(self, n_classes: int, width: int = 12) -> None:
        super().__init__()
        w = width
        self.enc1 = _block(1, w)  # 128
        self.enc2 = _block(w, 2 * w)  # 64
        self.enc3 = _block(2 * w, 4 * w)  # 32
        self.last_conv = _block(4 * w, 4 * w)  # 16
        self.dec3 = _block(8 * w, 2 * w)
        self.dec2 = _block(4 * w, w)
        self.mask_head = nn.Conv2d(w, 1, 1)
        # global context (avg + max of the encoder) + features pooled under the lesion mask + mask statistics
        self.classifier = nn.Sequential(
            nn.Dropout(0.2), nn.Linear(8 * w + w + 4 * w + 2, n_classes)
        )
        self.register_buffer("temperature", torch.ones(1))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.last_conv(F.max_pool2d(e3, 2))
        return e1, e2, e3, e4

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, mask_logits, _ = self.forward_with_features(x)
        return logits, mask_logits

    def forward_with_features(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(class logits, mask logits, penultimate features (N, ``FEATURE_SIZE``)).

        The penultimate features (what the classifier's last layer sees) are what the input
        guard (``models.inference.guard``) measures against the training phantoms: one forward
        pass serves the read and the guard, so the guard costs no second pass.
        """
        e1, e2, e3, e4 = self.features(x)
        d3 = self.dec3(torch.cat([F.interpolate(e4, scale_factor=2.0), e3], dim=1))
        d2 = self.dec2(torch.cat([F.interpolate(d3, scale_factor=2.0), e2], dim=1))
        mask_logits = self.mask_head(d2)
        # Mask-guided pooling: the class decision looks at the tissue the mask head outlines
        # (margin, spiculation) and at how sure it is that there is anything to outline.
        att = torch.sigmoid(mask_logits)
        weight = att.sum(dim=(2, 3)) + 1e-3
        lesion = (d2 * att).sum(dim=(2, 3)) / weight
        lesion_e3 = (e3 * F.avg_pool2d(att, 2)).sum(dim=(2, 3)) / (
            F.avg_pool2d(att, 2).sum(dim=(2, 3)) + 1e-3
        )
        stats = torch.cat([att.amax(dim=(2, 3)), att.mean(dim=(2, 3)) * 10], dim=1)
        pooled = torch.cat(
            [
                F.adaptive_avg_pool2d(e4, 1).flatten(1),
                F.adaptive_max_pool2d(e4, 1).flatten(1),
                lesion,
                lesion_e3,
                stats,
            ],
            dim=1,
        )
        return self.classifier(pooled), mask_logits, pooled

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated class logits only: the function explanations attribute."""
        return self.forward(x)[0] / self.temperature


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
