"""One-time, resumable conversion of a dataset into nf's on-disk format (:mod:`nfkit_core.data.shards`).

A source dataset is read part by part — one ``.npz`` batch of downsampled ImageNet, one CIFAR-10 batch file, or a run
of ``images_per_shard`` images of an image folder — and each part becomes one shard. Memory use is one part at a
time (an ImageNet-64 training batch is 1.6 GB), never the whole set.

The conversion is resumable: ``meta.json`` is written first with the plan (what each shard is read from), each shard
appears only when complete, and running the same conversion again skips the shards already there. A folder planned
for other data is refused instead of mixed. A lock file makes concurrent conversions of one folder (several
``torchrun`` processes converting on first use) wait for each other instead of writing the same shards.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nfkit_core.data import cifar10, image_folder, imagenet_npz
from nfkit_core.data.base import SPLITS, DataError, check_split, require_path
from nfkit_core.data.shards import (
    FORMAT,
    META_NAME,
    VERSION,
    shard_names,
    write_array_atomically,
    write_json_atomically,
)

__all__ = ["Part", "SOURCES", "convert", "plan_parts"]

IMAGES_PER_SHARD = 50_000


@dataclass(frozen=True)
class Part:
    """One piece of a source dataset that becomes one shard.

    Attributes:
        name: what it is, for progress and messages (e.g. a file name).
        identity: plain values that change when the source changes (file, size, modification time).
        read: returns ``uint8`` images ``(n, C, H, W)`` and ``int64`` labels ``(n,)``.
    """

    name: str
    identity: dict[str, Any]
    read: Callable[[], tuple[np.ndarray, np.ndarray]]


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"file": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _imagenet_parts(config: imagenet_npz.ImagenetNpzConfig, split: str, images_per_shard: int) -> list[Part]:
    root = require_path("imagenet-npz", "root", config.root, imagenet_npz.LAYOUT)

    def reader(path: Path) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        def read() -> tuple[np.ndarray, np.ndarray]:
            data, labels = imagenet_npz.read_batch(path)
            side = math.isqrt(data.shape[1] // 3)
            return data.reshape(-1, 3, side, side), labels.astype(np.int64) - 1
        return read

    return [Part(path.name, _file_identity(path), reader(path))
            for path in imagenet_npz.find_batches(root, split, config.train_files)]


def _cifar10_parts(config: cifar10.Cifar10Config, split: str, images_per_shard: int) -> list[Part]:
    from torchvision.datasets import CIFAR10

    root = require_path("cifar10", "root", config.root, cifar10.LAYOUT) / CIFAR10.base_folder
    files = CIFAR10.train_list if split == "train" else CIFAR10.test_list

    def reader(path: Path, checksum: str) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        def read() -> tuple[np.ndarray, np.ndarray]:
            data, labels = cifar10.read_batch(path, checksum, config.verify)
            return data.reshape(-1, 3, 32, 32), labels
        return read

    parts = []
    for name, checksum in files:
        if not (root / name).is_file():
            raise DataError(f"{root / name} not found (dataset 'cifar10' expects {cifar10.LAYOUT})")
        parts.append(Part(name, _file_identity(root / name), reader(root / name, checksum)))
    return parts


def _image_folder_parts(config: image_folder.ImageFolderConfig, split: str, images_per_shard: int) -> list[Part]:
    import torch
    from torch.utils.data import DataLoader, Subset

    dataset = image_folder.load_image_folder(config, split)
    paths = [path for path, _ in dataset.folder.samples]

    def reader(indices: range) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        def read() -> tuple[np.ndarray, np.ndarray]:
            loader = DataLoader(Subset(dataset, indices), batch_size=256, num_workers=0)
            images, labels = zip(*loader, strict=True)
            return torch.cat(images).to(torch.uint8).numpy(), torch.cat(labels).long().numpy()
        return read

    parts = []
    for start in range(0, len(paths), images_per_shard):
        indices = range(start, min(start + images_per_shard, len(paths)))
        digest = hashlib.sha256("\n".join(paths[i] for i in indices).encode()).hexdigest()
        identity = {"folder": str(Path(dataset.folder.root).resolve()), "first": start, "count": len(indices),
                    "paths_sha256": digest, "image_size": config.image_size, "channels": config.channels}
        parts.append(Part(f"{split} images {start}..{indices[-1]}", identity, reader(indices)))
    return parts


def _image_folder_classes(config: image_folder.ImageFolderConfig) -> int:
    """The number of class folders of the train split (which define the labels), without listing every image."""
    root = require_path("image-folder", "root", config.root, image_folder.LAYOUT)
    return sum(1 for entry in (root / "train").iterdir() if entry.is_dir())


SOURCES: dict[str, tuple[Callable[..., list[Part]], Callable[[Any], int]]] = {
    "imagenet-npz": (_imagenet_parts, lambda config: imagenet_npz.NUM_CLASSES),
    "cifar10": (_cifar10_parts, lambda config: 10),
    "image-folder": (_image_folder_parts, _image_folder_classes),
}


def plan_parts(dataset: str, config: Any, split: str, images_per_shard: int = IMAGES_PER_SHARD) -> list[Part]:
    """The parts ``split`` of ``dataset`` is converted from (one per shard)."""
    if dataset not in SOURCES:
        raise DataError(f"nf data convert reads {', '.join(SOURCES)}; {dataset!r} is not one of them")
    check_split(dataset, split)
    return SOURCES[dataset][0](config, split, images_per_shard)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (other processes wait here until it is released)."""
    with open(folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process converting into {folder}", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _source_config(config: Any) -> dict[str, Any]:
    """The options that decide what is read (where a converted copy is cached does not)."""
    values = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("cache", "in_memory")}
    return {**values, "root": str(Path(values["root"]).expanduser().resolve())}


def _complete_shard(folder: Path, split: str, index: int) -> int | None:
    """The image count of shard ``index`` when both its files are there and agree, else ``None``."""
    images_name, labels_name = shard_names(split, index)
    if not (folder / images_name).is_file() or not (folder / labels_name).is_file():
        return None
    try:
        images = np.load(folder / images_name, mmap_mode="r")
        labels = np.load(folder / labels_name, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return images.shape[0] if images.ndim == 4 and labels.shape == images.shape[:1] else None


def _convert_split(parts: list[Part], out: Path, split: str, shape: list[int] | None, bar: Any) -> dict[str, Any]:
    """Write the shards of one split that are not there yet; returns its ``meta.json`` entry."""
    for leftover in out.glob(f".{split}-*.tmp"):  # a shard being written when the last conversion stopped
        leftover.unlink()
    shards = []
    for index, part in enumerate(parts):
        images_name, labels_name = shard_names(split, index)
        count = _complete_shard(out, split, index)
        if count is None:
            images, labels = part.read()
            if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != images.shape[:1]:
                raise DataError(f"{part.name}: read {images.dtype} images {images.shape} with labels {labels.shape}; "
                                f"expected uint8 (n, C, H, W) and n labels")
            write_array_atomically(images, out / images_name)
            write_array_atomically(labels.astype(np.int64), out / labels_name)
            count = len(images)
        part_shape = list(np.load(out / images_name, mmap_mode="r").shape[1:])
        if shape is not None and part_shape != shape:
            raise DataError(f"{part.name} holds images of shape {part_shape}, the rest of the dataset {shape}; one "
                            f"converted dataset has one image shape")
        shape = part_shape
        shards.append({"images": images_name, "labels": labels_name, "count": count})
        bar.update(1)
    return {"count": sum(shard["count"] for shard in shards), "shards": shards, "shape": shape}


def convert(dataset: str, config: Any, out: str | Path, splits: Sequence[str] = SPLITS,
            images_per_shard: int = IMAGES_PER_SHARD, progress: bool = True) -> Path:
    """Convert ``splits`` of ``dataset`` (configured by ``config``) into the folder ``out``; returns ``out``.

    Running it again after an interruption continues where it stopped; splits already complete are skipped, and
    splits can be added to a folder later. A split whose source files equal another converted split's (``test`` and
    ``val`` of ImageNet and CIFAR-10 both read the validation files) shares that split's shards.

    Raises:
        DataError: the source is missing or malformed, or ``out`` holds a conversion of other data.
    """
    from tqdm import tqdm

    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {out} for the converted data ({error}); choose a writable folder") from None
    parts = {split: plan_parts(dataset, config, split, images_per_shard) for split in dict.fromkeys(splits)}
    source = {"dataset": dataset, "config": _source_config(config)}

    with _locked(out):
        meta_path = out / META_NAME
        meta = {"format": FORMAT, "version": VERSION, "source": source, "shape": None,
                "num_classes": SOURCES[dataset][1](config), "num_bins": 256, "splits": {}}
        if meta_path.is_file():
            existing = json.loads(meta_path.read_text())
            if [existing.get(key) for key in ("format", "version", "source")] != [FORMAT, VERSION, source]:
                raise DataError(f"{out} holds a conversion of other data ({existing.get('source')}); choose another "
                                f"output folder, or delete {out} to convert again")
            meta = existing
        plans = {}
        for split, split_parts in parts.items():
            identities = [part.identity for part in split_parts]
            known = {s: entry["plan"] for s, entry in meta["splits"].items()} | plans
            twin = next((s for s, plan in known.items() if plan.get("parts") == identities and s != split), None)
            plans[split] = {"same_as": twin} if twin else {"parts": identities}
            entry = meta["splits"].get(split)
            if entry is not None and entry["plan"] != plans[split] and entry["plan"].get("parts") != identities:
                if entry["complete"]:
                    raise DataError(f"split {split!r} in {out} was converted from other files; choose another "
                                    f"output folder, or delete {out} to convert again")
                for stale in out.glob(f"{split}-*.npy"):  # an unfinished split whose source changed starts over
                    stale.unlink()
        todo = [split for split in parts if not meta["splits"].get(split, {}).get("complete")]
        total = sum(len(parts[s]) for s in todo if "parts" in plans[s])
        bar = tqdm(total=total, unit="shard", disable=not progress or total == 0,
                   desc=f"converting {dataset} into {out}", dynamic_ncols=True)
        try:
            for split in todo:
                twin = plans[split].get("same_as")
                if twin:
                    done = {key: meta["splits"][twin][key] for key in ("count", "shards")}
                else:
                    meta["splits"][split] = {"plan": plans[split], "complete": False}
                    write_json_atomically(meta, meta_path)
                    done = _convert_split(parts[split], out, split, meta["shape"], bar)
                    meta["shape"] = done.pop("shape")
                meta["splits"][split] = {"plan": plans[split], "complete": True, **done}
                write_json_atomically(meta, meta_path)
        finally:
            bar.close()
    return out
