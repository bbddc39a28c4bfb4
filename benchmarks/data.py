"""Loader throughput: images/s of the training data path alone, for in-memory, memory-mapped and streamed data.

For each image size (3x32x32 and 3x64x64) the script writes ``--images`` synthetic images as downsampled-ImageNet
``.npz`` batches, converts them with nf's converter, and times ``--batches`` batches of ``--batch-size`` images,
decoded to float levels and uniformly dequantized (as the trainer prepares them), with ``num_workers`` 0..N:

* **in memory**: ``imagenet-npz`` with ``data.in_memory=true``, the batches in the seeded random order of
  :class:`nfkit_core.data.sampler.EpochSampler`;
* **memory-mapped**: the converted shards (``nf data convert``), same order; *warm* with the shards in the page
  cache, *cold* after evicting them (``posix_fadvise(DONTNEED)``), as on a node's first epoch;
* **streamed**: the same shards read front to back in large sequential reads (what a shard-streaming format gives at
  best: no random access and no global shuffle), warm and cold.

The paths are timed by the shared method of ``common.time_alternating`` (warm-up calls, then alternating rounds of
samples of at least ``--sample-seconds``; median and range of images/s, and each path's speed-up over the in-memory
array with the range of its per-round ratios). One call opens the loader (after evicting or warming the shards where
the path says so), draws two untimed batches (worker start-up excluded) and then times ``--batches`` batches, in
wall-clock time: loader workers are other processes, which a thread's CPU time would miss. Workers start the
platform's default way, as in a training script (fork on Linux before Python 3.14); ``--start-method`` chooses
another (``spawn``, ``forkserver``), whose workers are new interpreters.
The GPU column is the most a training step can consume: ``peak FLOP/s / training FLOPs per image``, with the FLOPs
per image counted by ``torch.utils.flop_counter`` on the nf presets (forward + backward, batch 1) and the H100 SXM's
dense bf16 peak of 989 TFLOP/s (NVIDIA H100 datasheet); real steps reach a fraction of it, so a loader faster than
this ceiling keeps the GPU fed.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import common
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from nfkit_core.data.convert import convert
from nfkit_core.data.imagenet_npz import ImagenetNpzConfig, conversion_source
from nfkit_core.data.preprocess import uniform_dequantize
from nfkit_core.data.sampler import EpochSampler
from nfkit_core.data.shards import ShardedImages
from nfkit_core.plugins import get_registry

H100_BF16_DENSE_FLOPS = 989e12
# What one training image costs (forward + backward, GFLOP), counted with torch.utils.flop_counter.FlopCounterMode on
# the nf presets at batch 1 (`python benchmarks/data.py --count-flops` prints these).
TRAINING_GFLOP_PER_IMAGE = {
    ("TarFlow, preset imagenet64 (460 M parameters)", 64): 2784.5,
    ("DenseFlow-74-10 (133 M parameters)", 32): 105.1,
    ("DenseFlow-74-10 (133 M parameters)", 64): 400.8,
}


def write_source(folder: Path, images: int, side: int, per_file: int) -> Path:
    """Synthetic downsampled-ImageNet batches (random levels and labels) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(side)
    for k, start in enumerate(range(0, images, per_file), start=1):
        count = min(per_file, images - start)
        np.savez(folder / f"train_data_batch_{k}.npz",
                 data=rng.integers(0, 256, (count, 3 * side * side), dtype=np.uint8),
                 labels=rng.integers(1, 1001, count))
    np.savez(folder / "val_data.npz", data=np.zeros((1, 3 * side * side), np.uint8), labels=np.ones(1, np.int64))
    return folder


def evict(folder: Path) -> None:
    """Drop the shards' pages from the page cache (clean, unmapped pages only; no privileges needed)."""
    for path in folder.glob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(folder: Path) -> None:
    """Read every shard once so that its pages are in the page cache."""
    for path in folder.glob("*.npy"):
        with open(path, "rb") as file:
            while file.read(1 << 24):
                pass


class SequentialShards(IterableDataset):
    """The shards of a converted split read front to back, ``batch_size`` rows per read; workers split the shards."""

    def __init__(self, dataset: ShardedImages, batch_size: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        shards = self.dataset.shards
        if worker is not None:
            shards = shards[worker.id::worker.num_workers]
        for shard in shards:
            labels = np.load(self.dataset.root / shard["labels"])
            with open(self.dataset.root / shard["images"], "rb") as file:
                version = np.lib.format.read_magic(file)
                header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                header(file)  # the file position is now the first image
                for start in range(0, shard["count"], self.batch_size):
                    count = min(self.batch_size, shard["count"] - start)
                    images = np.empty((count, *self.dataset.info.shape), np.uint8)
                    file.readinto(memoryview(images).cast("B"))
                    batch = torch.from_numpy(images).float()
                    if worker is not None:
                        # Moved to shared memory here, in a worker only, as the loader's collation allocates a batch
                        # it builds there. Left to the queue's feeder thread, that copy may still run when the loader
                        # shuts down mid-epoch a worker that ends by finalizing its interpreter (one started by spawn
                        # or forkserver), and the worker then aborts ("terminate called without an active
                        # exception"). In the main process a shared segment per batch would only cost time.
                        batch.share_memory_()
                    yield batch, torch.from_numpy(labels[start:start + count])


def load_batches(make_batches: Callable[[], Iterator], batches: int) -> float:
    """Seconds to draw ``batches`` batches and dequantize them, after two untimed batches (worker start-up
    excluded)."""
    iterator = make_batches()
    for _ in range(2):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        x, _ = next(iterator)
        uniform_dequantize(x, 256)
    seconds = time.perf_counter() - started
    del iterator  # shuts the loader's workers down before the next path starts its own
    return seconds


def timed_path(prepare: Callable[[Path], None] | None, folder: Path, make_batches: Callable[[], Iterator],
               batches: int) -> Callable[[], float]:
    """One call of a path for :func:`common.time_variants` (``self_timed``): prepare the page cache, then
    :func:`load_batches`."""
    def call() -> float:
        if prepare is not None:
            prepare(folder)
        return load_batches(make_batches, batches)
    return call


def count_flops() -> None:
    """Print the training FLOPs per image of the presets the GPU column uses (needs nfkit-tarflow/-denseflow)."""
    from torch.utils.flop_counter import FlopCounterMode

    from nfkit_core.plugins import DataInfo, get_registry

    registry = get_registry()
    for arch, preset, side in (("tarflow", "imagenet64", 64), ("denseflow", "denseflow-74-10", 32),
                               ("denseflow", "denseflow-74-10", 64)):
        spec = registry.get("architecture", arch)
        torch.manual_seed(0)
        flow = spec.build(spec.make_config(preset), DataInfo(shape=(3, side, side), num_bins=256))
        x = torch.randint(0, 256, (2, 3, side, side)).float() if arch == "denseflow" else torch.randn(2, 3, side, side)
        with torch.no_grad():
            flow(x, None)
        counter = FlopCounterMode(display=False)
        with counter:
            flow(x[:1], None).sum().backward()
        print(f"{arch} {preset} {side}x{side}: {counter.get_total_flops() / 1e9:.1f} GFLOP per training image")


def time_paths(args) -> dict[tuple[int, int], common.Timings]:
    """Every path of every image size (written under ``args.scratch`` by :func:`main`) and loader worker count, the
    paths taking turns (one process's share of the rounds: see ``common.time_in_processes``)."""
    timed = {}
    for side in args.sizes:
        source, folder = args.scratch / f"source{side}", args.scratch / f"converted{side}"
        in_memory = get_registry().load_dataset("imagenet-npz", ImagenetNpzConfig(str(source), in_memory=True),
                                                "train")
        sampler = EpochSampler(args.images, args.batch_size, seed=0)
        for workers in args.workers:
            start = {} if workers == 0 or args.start_method == "default" else \
                {"multiprocessing_context": multiprocessing.get_context(args.start_method)}

            def random_order(open_dataset, epoch=0, workers=workers, sampler=sampler, start=start):
                return lambda: iter(DataLoader(open_dataset(), batch_sampler=sampler.epoch(epoch),
                                               num_workers=workers, **start))

            def shards(folder=folder):  # opened afresh for each call: a mapped page cannot be evicted
                return ShardedImages(folder, "train")

            def streamed(workers=workers, folder=folder, start=start):
                dataset = SequentialShards(ShardedImages(folder, "train"), args.batch_size)
                return lambda: iter(DataLoader(dataset, batch_size=None, num_workers=workers, **start))

            paths = {
                "in memory": timed_path(None, folder, random_order(lambda in_memory=in_memory: in_memory),
                                        args.batches),
                "memory-mapped, warm": timed_path(warm, folder, random_order(shards), args.batches),
                "memory-mapped, cold": timed_path(evict, folder, random_order(shards, epoch=1), args.batches),
                "streamed, warm": timed_path(warm, folder, streamed(), args.batches),
                "streamed, cold": timed_path(evict, folder, streamed(), args.batches),
            }
            timed[side, workers] = common.time_variants(paths, args, self_timed=True)
            print(f"3x{side}x{side} workers {workers}: timed", file=sys.stderr)
    return timed


def main() -> None:
    parser = common.make_parser(__doc__.split("\n\n")[0], memory=False)
    parser.add_argument("--images", type=int, default=20000, help="images per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per call")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--start-method", choices=["default", *multiprocessing.get_all_start_methods()],
                        default="default",
                        help="how the loader starts its workers: the platform's default, as in a training script "
                             "(default), or one named")
    parser.add_argument("--count-flops", action="store_true", help="only print the FLOPs per training image")
    args = common.parse_args(parser)
    if args.device != "cpu":
        parser.error("the data loader runs on the CPU; --device does not apply (the GPU column comes from FLOPs)")
    if args.clock != "wall":
        parser.error("--clock thread would miss the loader workers' time (other processes): use --clock wall")
    if args.count_flops:
        count_flops()
        return
    stamp = common.Stamp("Loader throughput", args, precision="uint8 -> float32 + dequantization")
    images_per_call = args.batches * args.batch_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="nf-data-bench-") as scratch:
        args.scratch = Path(scratch)
        for side in args.sizes:
            source = write_source(args.scratch / f"source{side}", args.images, side, per_file=args.images // 4)
            convert(conversion_source(ImagenetNpzConfig(str(source))), args.scratch / f"converted{side}",
                    splits=("train",), progress=False)
        timed = common.time_in_processes(time_paths, args)
    for (side, workers), timings in timed.items():
        for name in timings.variants:
            rate = timings[name].rate(images_per_call)
            speedup = "baseline" if name == "in memory" else timings.speedup(name, "in memory").format(suffix="x")
            rows.append((side, workers, name, rate.format(), speedup))

    start_method = multiprocessing.get_start_method() if args.start_method == "default" else args.start_method
    lines = [stamp.render(extra=[f"one call: open the loader, 2 untimed batches, then {args.batches} timed batches "
                                 f"of {args.batch_size} images (only these are timed)",
                                 f"loader workers started by {start_method}"
                                 + (" (the platform's default)" if args.start_method == "default" else "")]),
             f"{args.images} images per size, batch {args.batch_size}.", "",
             "| image | num_workers | path | images/s | speed-up over in memory |", "|---|---|---|---|---|"]
    lines += [f"| 3x{side}x{side} | {workers} | {name} | {rate} | {speedup} |"
              for side, workers, name, rate, speedup in rows]
    lines += ["", "What a training step can consume at most on one H100 (989 TFLOP/s dense bf16, NVIDIA's datasheet) "
              "at 100% utilisation, from the FLOPs per training image counted on the nf presets "
              "(`python benchmarks/data.py --count-flops`):", "",
              "| model | image | training GFLOP per image | H100 ceiling, images/s |", "|---|---|---|---|"]
    lines += [f"| {model} | 3x{side}x{side} | {gflop:,.1f} | {H100_BF16_DENSE_FLOPS / (gflop * 1e9):,.0f} |"
              for (model, side), gflop in TRAINING_GFLOP_PER_IMAGE.items()]
    common.write_report(args.output, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
