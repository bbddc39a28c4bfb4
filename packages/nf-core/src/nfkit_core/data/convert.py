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
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nfkit_core.data.base import SPLITS, DataError, check_split
from nfkit_core.data.shards import (
    FORMAT,
    META_NAME,
    VERSION,
    shard_names,
    write_array_atomically,
    write_json_atomically,
)

__all__ = ["IMAGES_PER_SHARD", "Part", "Source", "convert", "file_identity", "source_options"]

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


@dataclass(frozen=True)
class Source:
    """A dataset as the converter reads it; each convertible dataset module builds one (``conversion_source``).

    Attributes:
        dataset: the registered dataset name.
        options: the options that decide what is read (recorded in ``meta.json``; the root as an absolute path).
        num_classes: the number of class labels.
        parts: ``parts(split)``, the parts ``split`` is converted from, one per shard.
    """

    dataset: str
    options: dict[str, Any]
    num_classes: int
    parts: Callable[[str], list[Part]]


def file_identity(path: Path) -> dict[str, Any]:
    """What identifies a source file's content cheaply: its absolute path, size and modification time.

    Args:
        path: the source file.
    """
    stat = path.stat()
    return {"file": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


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


def source_options(config: Any, ignore: Sequence[str] = ()) -> dict[str, Any]:
    """A dataset config's options as plain values, the root resolved, without the options in ``ignore``.

    Args:
        config: a dataset config dataclass with a ``root`` option.
        ignore: options that do not decide what is read (e.g. where the converted copy is cached).
    """
    values = {k: v for k, v in dataclasses.asdict(config).items() if k not in ignore}
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


def convert(source: Source, out: str | Path, splits: Sequence[str] = SPLITS, progress: bool = True) -> Path:
    """Convert ``splits`` of ``source`` into the folder ``out``; returns ``out``.

    Running it again after an interruption continues where it stopped; splits already complete are skipped, and
    splits can be added to a folder later. A split whose source files equal another converted split's (``test`` and
    ``val`` of ImageNet and CIFAR-10 both read the validation files) shares that split's shards.

    Args:
        source: the dataset as the converter reads it (a dataset module's ``conversion_source``).
        out: the folder to write (``meta.json`` and the shards).
        splits: the splits to convert.
        progress: show a progress bar.

    Returns:
        ``out``.

    Raises:
        DataError: the source is missing or malformed, or ``out`` holds a conversion of other data.
    """
    from tqdm import tqdm

    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot create {out} for the converted data ({error}); choose a writable folder") from None
    for split in splits:
        check_split(source.dataset, split)
    parts = {split: source.parts(split) for split in dict.fromkeys(splits)}
    dataset = source.dataset
    recorded = {"dataset": dataset, "config": source.options}

    with _locked(out):
        meta_path = out / META_NAME
        meta = {"format": FORMAT, "version": VERSION, "source": recorded, "shape": None,
                "num_classes": source.num_classes, "num_bins": 256, "splits": {}}
        if meta_path.is_file():
            existing = json.loads(meta_path.read_text())
            if [existing.get(key) for key in ("format", "version", "source")] != [FORMAT, VERSION, recorded]:
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
