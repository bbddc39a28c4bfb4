"""A dataset's own classifier as a feature extractor, for data where Inception-v3 is meaningless (8x8 digits) or
unavailable.

A small network (two convolutions for images, two linear layers for vectors, then a 64-d feature layer and the class
logits) is trained once on the training split's labels with a fixed seed, and saved in a cache folder (the run
folder's ``eval_cache/``) under a name that holds the dataset, its options and the seed, so every later evaluation of
any run on that data uses the same features. Its features are the 64-d penultimate activations; metrics in them are
called ``FD-<dataset>`` and are comparable only between evaluations that use the same classifier.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nfkit_core.errors import ConfigError
from nfkit_eval.data import EvalData, stack

__all__ = ["DatasetClassifier", "ClassifierExtractor", "train_classifier", "load_or_train_classifier",
           "FEATURES", "CLASSIFIER_VERSION", "EPOCHS"]

FEATURES = 64
EPOCHS = 15
CLASSIFIER_VERSION = 1
"""Bumped whenever the network or its training changes, so that cached classifiers of another recipe are not reused."""


class DatasetClassifier(nn.Module):
    """Inputs scaled to ``[-1, 1]`` -> 64-d features -> class logits.

    Args:
        shape: the shape of one input: ``(C, H, W)`` images (a small CNN) or ``(D,)`` vectors (an MLP).
        num_classes: the number of classes.
    """

    def __init__(self, shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.shape = tuple(shape)
        if len(shape) == 3:
            channels = shape[0]
            self.body = nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(256, FEATURES), nn.ReLU())
        else:
            features = math.prod(shape)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, FEATURES),
                                      nn.ReLU())
        self.head = nn.Linear(FEATURES, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _scale(values: Tensor, num_bins: int | None) -> Tensor:
    """Levels ``0 .. K-1`` onto ``[-1, 1]``; continuous data as it is."""
    return values.float() if num_bins is None else values.float() / (num_bins - 1) * 2 - 1


def train_classifier(data: EvalData, seed: int = 0, epochs: int = EPOCHS, batch_size: int = 64, lr: float = 2e-3,
                     progress: Callable[[int], None] | None = None) -> tuple[DatasetClassifier, float]:
    """Train the classifier on the training split; returns it (in eval mode) and its accuracy on the held-out split.

    ``progress(1)`` is called after each epoch.

    Args:
        data: the evaluation data (its training and held-out splits, with labels).
        seed: seeds the initialisation and the batch order.
        epochs: passes over the training split.
        batch_size: examples per step.
        lr: Adam's learning rate.
        progress: called after each epoch.

    Raises:
        ConfigError: the data has no class labels.
    """
    x, labels = stack(data.train)
    if labels.min() < 0:
        raise ConfigError(f"dataset {data.name!r} has no class labels, so no classifier can be trained for its "
                         f"features; use --extractor inception for images, or the tabular metrics for vectors")
    num_classes = int(labels.max()) + 1
    num_bins = data.preprocessing.num_bins
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DatasetClassifier(tuple(x.shape[1:]), num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    inputs = _scale(x, num_bins)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(inputs[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if progress is not None:
            progress(1)
    model.eval()
    held_x, held_labels = stack(data.held_out)
    with torch.no_grad():
        accuracy = (model(_scale(held_x, num_bins)).argmax(1) == held_labels).float().mean().item()
    return model, accuracy


def _cache_key(data: EvalData, seed: int) -> str:
    config = dataclasses.asdict(data.config) if dataclasses.is_dataclass(data.config) else repr(data.config)
    text = json.dumps({"dataset": data.name, "config": config, "seed": seed, "version": CLASSIFIER_VERSION,
                       "held_out": data.split}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_or_train_classifier(data: EvalData, cache_dir: str | Path | None, seed: int = 0,
                             progress: Callable[[int], None] | None = None
                             ) -> tuple[DatasetClassifier, dict[str, Any]]:
    """The cached classifier of ``data`` in ``cache_dir`` (trained and saved atomically on first use).

    Returns the classifier and its description (dataset, seed, held-out accuracy, cache file, whether it was
    trained now).

    Args:
        data: the evaluation data.
        cache_dir: where trained classifiers are kept (``None``: train without caching).
        seed: seeds the training.
        progress: called after each training epoch.
    """
    path = Path(cache_dir) / f"classifier-{data.name}-{_cache_key(data, seed)}.pt" if cache_dir else None
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = DatasetClassifier(tuple(state["shape"]), int(state["num_classes"]))
        model.load_state_dict(state["model"])
        info = {**state["info"], "trained_now": False}
        return model.eval(), info
    model, accuracy = train_classifier(data, seed, progress=progress)
    info = {"dataset": data.name, "seed": seed, "held_out_split": data.split, "held_out_accuracy": accuracy,
            "features": FEATURES, "version": CLASSIFIER_VERSION, "cache": str(path) if path else None}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save({"shape": list(model.shape), "num_classes": model.head.out_features,
                        "model": model.state_dict(), "info": info}, temporary)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return model, {**info, "trained_now": True}


class ClassifierExtractor:
    """The 64-d features of a :class:`DatasetClassifier`; metrics in them are named ``FD-<dataset>``."""

    def __init__(self, model: DatasetClassifier, info: dict[str, Any], num_bins: int | None) -> None:
        self.model = model.eval()
        self.info = info
        self.num_bins = num_bins
        self.name = str(info["dataset"])

    @classmethod
    def for_data(cls, data: EvalData, cache_dir: str | Path | None, seed: int = 0,
                 progress: Callable[[int], None] | None = None) -> ClassifierExtractor:
        model, info = load_or_train_classifier(data, cache_dir, seed, progress)
        return cls(model, info, data.preprocessing.num_bins)

    @torch.no_grad()
    def __call__(self, values: Tensor) -> Tensor:
        return torch.cat([self.model.features(_scale(batch, self.num_bins)).double()
                          for batch in values.cpu().split(512)])

    def protocol(self) -> dict[str, Any]:
        return {"extractor": f"{self.name} classifier (nfkit-eval v{self.info['version']}, 64-d penultimate layer)",
                "classifier_seed": self.info["seed"],
                "classifier_held_out_accuracy": round(self.info["held_out_accuracy"], 4),
                "classifier_cache": self.info["cache"]}
