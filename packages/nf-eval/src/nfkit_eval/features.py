"""Feature extractors for sample metrics: Inception-v3 (FID-compatible) from a local weights file, or a dataset's own
classifier (:mod:`nfkit_eval.classifier`).

An extractor maps a batch of data values (integer levels for images) to one feature vector per example. Metrics in
its features are named after it: ``FID`` for Inception-v3 (the standard ``pt_inception-2015-12-05`` weights, the
2048-d pool features, torch-fidelity's TensorFlow-compatible bilinear resize to 299x299), ``FD-<name>`` for any other
extractor, which is never comparable with published FIDs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from nfkit_core.errors import ConfigError, MissingFileError

__all__ = ["FeatureExtractor", "InceptionWeightsMissing", "InceptionV3", "find_inception_weights",
           "INCEPTION_FILE_PATTERN", "INCEPTION_ENV"]

INCEPTION_FILE_PATTERN = "*inception-2015-12-05*.pth"
"""The file name pattern of the standard FID weights, pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
(torch-fidelity ships the same file as ``weights-inception-2015-12-05-6726825d.pth``)."""
INCEPTION_ENV = "NFKIT_INCEPTION_WEIGHTS"


class FeatureExtractor(Protocol):
    """What sample metrics need from a feature extractor."""

    name: str
    """``"FID"``-style metric prefix: ``"inception-v3"`` gives ``FID``, anything else ``FD-<name>``."""

    def __call__(self, values: Tensor) -> Tensor:
        """Features ``(n, d)`` of data values ``(n, *shape)``."""

    def protocol(self) -> dict[str, Any]:
        """What the features are, for reports."""


class InceptionWeightsMissing(MissingFileError):
    """The Inception-v3 weights file for FID is not on this machine (nf never downloads it)."""


def find_inception_weights(path: str | Path | None = None) -> Path:
    """The Inception-v3 weights: ``path``, else ``$NFKIT_INCEPTION_WEIGHTS``, else a file matching
    :data:`INCEPTION_FILE_PATTERN` in PyTorch's hub cache (``torch.hub.get_dir()/checkpoints``).

    Raises:
        InceptionWeightsMissing: none found; the message says where to put the file.
    """
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    configured = path or os.environ.get(INCEPTION_ENV)
    if configured:
        found = Path(configured).expanduser()
        if found.is_file():
            return found
        raise InceptionWeightsMissing(f"no Inception-v3 weights at {found}; download pt_inception-2015-12-05-"
                                      f"6726825d.pth (the standard FID weights) on a machine with internet access and "
                                      f"pass its path with --inception-weights")
    candidates = sorted(hub.glob(INCEPTION_FILE_PATTERN)) if hub.is_dir() else []
    if candidates:
        return candidates[0]
    raise InceptionWeightsMissing(f"FID needs the Inception-v3 weights pt_inception-2015-12-05-6726825d.pth, which nf "
                                  f"never downloads: put the file in {hub}, or pass --inception-weights FILE (or set "
                                  f"{INCEPTION_ENV}); or use --extractor classifier for FD in a dataset classifier's "
                                  f"features")


class InceptionV3:
    """torch-fidelity's Inception-v3 (``inception-v3-compat``) with weights from a local file; 2048-d features.

    Images of ``num_bins`` levels are mapped to 8-bit RGB (``round(level / (K - 1) * 255)``, grey channels repeated),
    as torch-fidelity expects; it resizes them to 299x299 itself.
    """

    name = "inception-v3"

    def __init__(self, weights: str | Path | None = None, num_bins: int = 256, batch_size: int = 64,
                 device: torch.device | str = "cpu") -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.weights = find_inception_weights(weights)
        # weights_only=True first: the file must hold tensors only, so torch-fidelity's own load cannot run code.
        try:
            torch.load(self.weights, map_location="cpu", weights_only=True)
        except Exception as error:
            raise InceptionWeightsMissing(f"{self.weights} is not a readable Inception-v3 weights file ({error})"
                                          ) from None
        try:
            self.model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                     feature_extractor_weights_path=str(self.weights))
        except RuntimeError as error:
            raise InceptionWeightsMissing(f"{self.weights} does not hold the FID Inception-v3 weights ({error})"
                                          ) from None
        self.model.to(device)
        self.num_bins = num_bins
        self.batch_size = batch_size
        self.device = torch.device(device)

    def to_uint8_rgb(self, values: Tensor) -> Tensor:
        """Levels ``(n, C, H, W)`` to ``uint8`` RGB."""
        if values.dim() != 4 or values.shape[1] not in (1, 3):
            raise ConfigError(f"Inception-v3 features need images of 1 or 3 channels, got shape {tuple(values.shape)}")
        images = torch.round(values.float() / (self.num_bins - 1) * 255).clamp(0, 255).to(torch.uint8)
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

    @torch.no_grad()
    def __call__(self, values: Tensor) -> Tensor:
        images = self.to_uint8_rgb(values)
        chunks = [self.model(batch.to(self.device))[0].double().cpu() for batch in images.split(self.batch_size)]
        return torch.cat(chunks)

    def protocol(self) -> dict[str, Any]:
        return {"extractor": "inception-v3-compat (torch-fidelity)", "weights": self.weights.name, "features": 2048,
                "resize": "torch-fidelity's TensorFlow-1 compatible bilinear resize to 299x299",
                "input": "uint8 RGB, round(level / (K - 1) * 255)"}

