"""``nf data``: convert a dataset once into nf's memory-mapped format, and describe a converted folder.

``nf data convert --data NAME --root SOURCE --out DIR [--set KEY=VALUE ...] [--splits train val test]`` reads the
ImageNet 32/64 ``.npz`` batches, the CIFAR-10 python batches or an image folder part by part and writes
``uint8`` shards (see :mod:`nfkit_core.data.shards`); interrupted, the same command continues where it stopped.
``nf data info DIR`` prints what a converted folder holds. Training reads a converted folder with
``nf train --data converted --set data.root=DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from nfkit_core.cli.settings import parse_assignments
from nfkit_core.data import CONVERTIBLE, SPLITS
from nfkit_core.data.convert import IMAGES_PER_SHARD, convert
from nfkit_core.data.shards import read_meta
from nfkit_core.errors import ConfigError
from nfkit_core.plugins.manager import get_registry
from nfkit_core.specs import CommandSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    to_shards = actions.add_parser(
        "convert", help="convert a dataset into memory-mapped uint8 shards (resumable)",
        description="Convert a dataset into nf's memory-mapped format, one shard per source part; run the same "
                    "command again to continue an interrupted conversion.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    to_shards.add_argument("--data", required=True, choices=sorted(CONVERTIBLE), help="the source format")
    to_shards.add_argument("--root", required=True, metavar="DIR", help="the source folder (the dataset's data.root)")
    to_shards.add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    to_shards.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS, help="the splits to convert")
    to_shards.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                           help="another option of the source dataset (e.g. image_size=64 for image-folder)")
    to_shards.add_argument("--images-per-shard", type=int, default=IMAGES_PER_SHARD, metavar="N",
                           help="images per shard of an image folder (npz and CIFAR-10 files map to one shard each)")
    to_shards.add_argument("--no-progress", action="store_true", help="no progress bar")
    info = actions.add_parser("info", help="describe a converted folder",
                              description="Print the image shape, classes and the size of each split.")
    info.add_argument("folder", metavar="DIR")
    info.add_argument("--json", action="store_true", help="print the folder's meta.json")


def _convert(args: argparse.Namespace) -> int:
    spec = get_registry().datasets.get(args.data)
    options = parse_assignments(args.set, {"data": spec.config_class})["data"]
    if "root" in options:
        raise ConfigError("give the source folder with --root, not --set root=...")
    config = spec.config_class(**{**options, "root": args.root})
    source = CONVERTIBLE[args.data](config, args.images_per_shard)
    out = convert(source, args.out, args.splits, progress=not args.no_progress)
    _describe(out)
    return 0


def _describe(folder: str | Path) -> None:
    meta = read_meta(folder)
    shape = "x".join(str(n) for n in meta["shape"] or ["?"])
    print(f"{folder}: {shape} uint8 images, {meta['num_classes']} classes, converted from "
          f"{meta['source']['dataset']}")
    for split, entry in meta["splits"].items():
        if not entry["complete"]:
            print(f"  {split}: unfinished (run the same nf data convert command again to complete it)")
            continue
        size = entry["count"] * math.prod(meta["shape"])
        print(f"  {split}: {entry['count']} images in {len(entry['shards'])} shard(s), {size / 2**20:.1f} MiB")


def run(args: argparse.Namespace) -> int:
    if args.action == "convert":
        return _convert(args)
    if args.json:
        print(json.dumps(read_meta(args.folder), indent=2))
    else:
        _describe(args.folder)
    return 0


COMMAND = CommandSpec("data", "Convert a dataset once into memory-mapped uint8 shards for training at any size "
                      "(`nf data convert`), or describe a converted folder (`nf data info`).", add_arguments, run)
