"""Images in class folders, read with :class:`torchvision.datasets.ImageFolder`.

Layout: ``data.root/<split>/<class>/<image>`` for the splits ``train``, ``val`` and ``test``; the class folders of
``train`` define the labels. Every image is converted to ``channels`` channels, centre-cropped to a square and resized
to ``image_size`` (see :func:`nfkit_core.data.preprocess.center_crop_resize`), and returned as 8-bit levels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from nfkit_core.data.base import DataError, check_split, require_path
from nfkit_core.data.convert import IMAGES_PER_SHARD, Part, Source, source_options
from nfkit_core.data.preprocess import center_crop_resize
from nfkit_core.extras import require
from nfkit_core.specs import DataInfo, DatasetSpec

__all__ = ["ImageFolderConfig", "ImageFolderDataset", "load_image_folder", "conversion_source", "SPEC"]

LAYOUT = "<root>/{train,val,test}/<class name>/<image files>"


@dataclass
class ImageFolderConfig:
    """Options of the ``image-folder`` dataset.

    Attributes:
        root: the folder holding ``train/``, ``val/`` and ``test/``.
        image_size: side of the square images after centre crop and resize.
        channels: 3 (RGB) or 1 (grey-scale).
    """

    root: str = ""
    image_size: int = 32
    channels: int = 3


def _read_image(path: str, mode: str) -> Tensor:
    pil_to_tensor = require("torchvision.transforms.functional", "the image-folder dataset").pil_to_tensor
    from PIL import Image

    try:
        with Image.open(path) as image:
            return pil_to_tensor(image.convert(mode))
    except OSError as error:
        raise DataError(f"{path} is not a readable image ({error})") from None


def _check_headers(paths: Iterable[str]) -> None:
    """Open every image far enough to read its header (format and size, no pixels): a file that is not an image
    fails here, naming the file, instead of at some training step."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise DataError(f"{path} is not a readable image ({error}); remove or replace it") from None
        if width == 0 or height == 0:
            raise DataError(f"{path} is an empty image ({width} x {height})")


class ImageFolderDataset(Dataset):
    """One split of an image folder; items are ``(levels (C, S, S) float, label)``.

    Args:
        folder: the split's folder, one sub-folder per class.
        classes: the class names (sub-folders of the training split), in label order.
        config: the dataset's options (image size, channels).

    Raises:
        DataError: ``channels`` other than 1 or 3, ``image_size < 1``, a folder without images, or class folders
            other than the training split's.
    """

    def __init__(self, folder: Path, classes: list[str], config: ImageFolderConfig) -> None:
        ImageFolder = require("torchvision.datasets", "the image-folder dataset").ImageFolder

        mode = {1: "L", 3: "RGB"}.get(config.channels)
        if mode is None:
            raise DataError(f"image-folder: channels must be 1 or 3, got {config.channels}")
        if config.image_size < 1:
            raise DataError(f"image-folder: data.image_size must be at least 1, got {config.image_size}")
        try:
            self.folder = ImageFolder(str(folder), loader=partial(_read_image, mode=mode))
        except FileNotFoundError as error:
            raise DataError(f"{folder}: {error} (dataset 'image-folder' expects {LAYOUT})") from None
        if self.folder.classes != classes:
            raise DataError(f"{folder} has class folders {self.folder.classes}, but the train split has {classes}")
        _check_headers(path for path, _ in self.folder.samples)
        self.image_size = config.image_size
        self.info = DataInfo(shape=(config.channels, config.image_size, config.image_size),
                             num_classes=len(classes), num_bins=256)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, label = self.folder[index]
        return center_crop_resize(image, self.image_size).float(), torch.tensor(label)


def load_image_folder(config: ImageFolderConfig, split: str) -> ImageFolderDataset:
    """The ``split`` folder of ``config.root``.

    Args:
        config: the dataset's options.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        DataError: an unknown split, or data that are missing or malformed (the message says what to fetch or fix).
    """
    check_split("image-folder", split)
    root = require_path("image-folder", "root", config.root, LAYOUT)
    folder, train = root / split, root / "train"
    for needed in (train, folder):
        if not needed.is_dir():
            raise DataError(f"{needed} is not a folder (dataset 'image-folder' expects {LAYOUT})")
    classes = sorted(entry.name for entry in train.iterdir() if entry.is_dir())
    return ImageFolderDataset(folder, classes, config)


def conversion_source(config: ImageFolderConfig, images_per_shard: int | None = None) -> Source:
    """The folder as :func:`nfkit_core.data.convert.convert` reads it: runs of ``images_per_shard`` images (50,000
    by default), decoded, cropped and resized as training would.

    Args:
        config: the dataset's options.
        images_per_shard: images per shard of the converted copy, where the source does not fix it.

    Returns:
        the source, for :func:`nfkit_core.data.convert.convert`.
    """
    from torch.utils.data import DataLoader, Subset

    root = require_path("image-folder", "root", config.root, LAYOUT)
    per_shard = images_per_shard or IMAGES_PER_SHARD
    num_classes = sum(1 for entry in (root / "train").iterdir() if entry.is_dir())  # without listing every image

    def reader(dataset: ImageFolderDataset, indices: range):
        def read():
            images, labels = zip(*DataLoader(Subset(dataset, indices), batch_size=256), strict=True)
            return torch.cat(images).to(torch.uint8).numpy(), torch.cat(labels).long().numpy()
        return read

    def parts(split: str) -> list[Part]:
        dataset = load_image_folder(config, split)
        paths = [path for path, _ in dataset.folder.samples]
        found = []
        for start in range(0, len(paths), per_shard):
            indices = range(start, min(start + per_shard, len(paths)))
            identity = {"folder": str(Path(dataset.folder.root).resolve()), "first": start, "count": len(indices),
                        "paths_sha256": hashlib.sha256("\n".join(paths[i] for i in indices).encode()).hexdigest()}
            found.append(Part(f"{split} images {start}..{indices[-1]}", identity, reader(dataset, indices)))
        return found

    return Source("image-folder", {**source_options(config), "images_per_shard": per_shard}, num_classes, parts)


SPEC = DatasetSpec("image-folder", ImageFolderConfig, load_image_folder,
                   "images in <root>/<split>/<class>/ folders (torchvision ImageFolder), centre-cropped and resized")
