"""Out-of-core data: conversion into memory-mapped shards, the distributed data order, memory, resumption.

Every test writes synthetic data in the real layouts (ImageNet's ``.npz`` batches, CIFAR-10's pickles, an image
folder) and checks numbers: the same images and labels as the in-memory loaders, every image once per epoch across
ranks, the same order after a resume, the resident memory of a process reading many batches.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from nfkit_core.checkpoint import read_checkpoint
from nfkit_core.data import DataError
from nfkit_core.data import imagenet_npz as imagenet_module
from nfkit_core.data.cifar10 import Cifar10Config
from nfkit_core.data.convert import convert
from nfkit_core.data.image_folder import ImageFolderConfig
from nfkit_core.data.imagenet_npz import ImagenetNpzConfig
from nfkit_core.data.sampler import EpochSampler
from nfkit_core.data.shards import ShardedImages, read_meta
from nfkit_core.plugins import manager as manager_module
from nfkit_core.train import Trainer, make_run_config


def write_imagenet(folder, files=3, per_file=1000, side=32, val=500, seed=0):
    """Downsampled-ImageNet batches: ``data`` (N, 3 * side * side) uint8, ``labels`` in 1..1000."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, count in [(f"train_data_batch_{k}.npz", per_file) for k in range(1, files + 1)] + [("val_data.npz", val)]:
        np.savez(folder / name, data=rng.integers(0, 256, (count, 3 * side * side), dtype=np.uint8),
                 labels=rng.integers(1, 1001, count))
    return folder


def convert_imagenet(batches, out):
    """Convert the ``.npz`` batches in ``batches`` into ``out``."""
    return convert(imagenet_module.conversion_source(ImagenetNpzConfig(str(batches))), out, progress=False)


def every_item(dataset):
    """All images (as float levels) and labels of a dataset, read in one batch through its DataLoader path."""
    x, labels = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    return x, labels


@pytest.fixture
def nf(monkeypatch, registry, capsys):
    """``nf`` in-process with nfkit-core's built-ins and the tiny test architecture; returns (exit code, out)."""
    import nfkit_core.testing.tiny as tiny
    from nfkit_core.cli import main
    from nfkit_core.plugins import PluginManager

    manager = PluginManager(autoload=False)
    manager.register(tiny, "nf-testing")
    monkeypatch.setattr(manager_module, "_manager", manager)

    def run(*argv):
        code = main([str(a) for a in argv])
        return code, capsys.readouterr().out

    return run


# ------------------------------------------------------------------------------------------------ same images

def test_converted_imagenet_equals_the_in_memory_loader(registry, nf, tmp_path):
    source = write_imagenet(tmp_path / "Imagenet32_train_npz")
    code, out = nf("data", "convert", "--data", "imagenet-npz", "--root", source, "--out", tmp_path / "in32",
                   "--no-progress")
    assert code == 0 and "train: 3000 images in 3 shard(s)" in out and "test: 500 images in 1 shard(s)" in out
    meta = read_meta(tmp_path / "in32")
    assert meta["splits"]["test"]["shards"] == meta["splits"]["val"]["shards"]  # one copy of the validation file
    assert sorted(p.name for p in (tmp_path / "in32").glob("*.npy")) == [
        "train-00000.labels.npy", "train-00000.npy", "train-00001.labels.npy", "train-00001.npy",
        "train-00002.labels.npy", "train-00002.npy", "val-00000.labels.npy", "val-00000.npy"]

    in_memory = ImagenetNpzConfig(str(source), in_memory=True)
    for split in ("train", "val", "test"):
        reference = registry.load_dataset("imagenet-npz", in_memory, split)
        converted = ShardedImages(tmp_path / "in32", split)
        assert converted.info == reference.info and len(converted) == len(reference)
        x, labels = every_item(converted)
        assert torch.equal(x, reference.data.float()) and torch.equal(labels, reference.labels)
        # Random access across shard boundaries, repeats included, returns the same rows.
        rows = [2999, 0, 1000, 999, 1500, 0] if split == "train" else [499, 3, 3]
        images, row_labels = converted.read(np.array(rows))
        assert np.array_equal(images, reference.data[rows].numpy())
        assert np.array_equal(row_labels, reference.labels[rows].numpy())


def test_imagenet_npz_converts_on_first_use_into_a_cache(registry, tmp_path, monkeypatch):
    source = write_imagenet(tmp_path / "batches", files=2, per_file=300, side=8, val=40)
    train = registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(source)), "train")
    assert isinstance(train, ShardedImages) and train.root == source / "nfkit-converted" / "imagenet-npz"
    reference = registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(source), in_memory=True), "train")
    assert torch.equal(every_item(train)[0], reference.data.float())

    # Second use: the cache is read, the batches are not.
    def no_reading(path):
        raise AssertionError(f"read {path} again")

    elsewhere = ImagenetNpzConfig(str(source), cache=str(tmp_path / "elsewhere"))
    cached = registry.load_dataset("imagenet-npz", elsewhere, "val")
    assert cached.root == tmp_path / "elsewhere" / "imagenet-npz" and len(cached) == 40

    monkeypatch.setattr(imagenet_module, "read_batch", no_reading)
    again = registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(source)), "train")
    assert torch.equal(every_item(again)[1], reference.labels)


def write_cifar(root, per_file=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_file).tolist()}
        with open(folder / name, "wb") as file:
            pickle.dump(batch, file)


def write_image_folder(root):
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 2), ("test", 2)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                image = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
                image.save(root / split / name / f"{i}.png")


@pytest.mark.parametrize("dataset", ["cifar10", "image-folder"])
def test_cifar10_and_image_folders_convert_to_the_same_images(registry, nf, tmp_path, dataset):
    if dataset == "cifar10":
        write_cifar(tmp_path / "source")
        options, config = ["--set", "verify=false"], Cifar10Config(str(tmp_path / "source"), verify=False)
    else:
        write_image_folder(tmp_path / "source")
        options, config = ["--set", "image_size=8", "--images-per-shard", "4"], ImageFolderConfig(
            str(tmp_path / "source"), image_size=8)
    code, _ = nf("data", "convert", "--data", dataset, "--root", tmp_path / "source", "--out", tmp_path / "out",
                 "--no-progress", *options)
    assert code == 0
    for split in ("train", "val", "test"):
        reference = registry.load_dataset(dataset, config, split)
        converted = ShardedImages(tmp_path / "out", split)
        assert converted.info == reference.info
        expected, converted_items = every_item(reference), every_item(converted)
        assert torch.equal(converted_items[0], expected[0]) and torch.equal(converted_items[1], expected[1])
    if dataset == "image-folder":  # 10 training images in shards of 4
        assert [s["count"] for s in read_meta(tmp_path / "out")["splits"]["train"]["shards"]] == [4, 4, 2]


# ------------------------------------------------------------------------------------------------ resumable

def test_an_interrupted_conversion_continues_where_it_stopped(registry, tmp_path, monkeypatch):
    source = write_imagenet(tmp_path / "batches", files=4, per_file=250, side=8, val=50)
    read = imagenet_module.read_batch

    def fail_on_the_third_batch(path):
        if path.name == "train_data_batch_3.npz":
            raise KeyboardInterrupt
        return read(path)

    monkeypatch.setattr(imagenet_module, "read_batch", fail_on_the_third_batch)
    config = ImagenetNpzConfig(str(source))
    with pytest.raises(KeyboardInterrupt):
        convert(imagenet_module.conversion_source(config), tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="conversion of split 'train' in .* is unfinished; run the same"):
        ShardedImages(tmp_path / "out", "train")
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("train-*.npy")}
    assert sorted(written) == ["train-00000.labels.npy", "train-00000.npy", "train-00001.labels.npy",
                               "train-00001.npy"]
    (tmp_path / "out" / ".train-00002.npy.tmp").write_bytes(b"half a shard")  # a write cut short

    reads = []
    monkeypatch.setattr(imagenet_module, "read_batch", lambda path: reads.append(path.name) or read(path))
    convert(imagenet_module.conversion_source(config), tmp_path / "out", progress=False)
    assert reads == ["train_data_batch_3.npz", "train_data_batch_4.npz", "val_data.npz"]  # not the first two again
    assert all((tmp_path / "out" / name).stat().st_mtime_ns == time for name, time in written.items())
    assert not list((tmp_path / "out").glob(".*.tmp"))
    reference = registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(source), in_memory=True), "train")
    x, labels = every_item(ShardedImages(tmp_path / "out", "train"))
    assert torch.equal(x, reference.data.float()) and torch.equal(labels, reference.labels)


def test_a_folder_of_other_data_is_refused(tmp_path):
    first = write_imagenet(tmp_path / "first", files=1, per_file=10, side=8, val=5)
    second = write_imagenet(tmp_path / "second", files=1, per_file=10, side=8, val=5, seed=1)
    convert_imagenet(first, tmp_path / "out")
    with pytest.raises(DataError, match="holds a conversion of other data"):
        convert_imagenet(second, tmp_path / "out")
    with pytest.raises(DataError, match="holds no converted dataset"):
        ShardedImages(tmp_path, "train")


# ------------------------------------------------------------------------------------------------ data order

def test_two_ranks_together_see_every_image_once_per_epoch(registry, tmp_path):
    """Labels 0..N-1 name the images; each rank reads only its own batches from the memory-mapped shards."""
    folder = tmp_path / "batches"
    folder.mkdir()
    labels = np.arange(3000)
    for k in range(3):
        rows = labels[k * 1000:(k + 1) * 1000]
        np.savez(folder / f"train_data_batch_{k + 1}.npz", data=np.zeros((1000, 3 * 4 * 4), np.uint8),
                 labels=rows % 1000 + 1)
    dataset = registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(folder)), "train")
    position = {(k, i): k * 1000 + i for k in range(3) for i in range(1000)}

    orders = []
    for epoch in range(3):
        seen = []
        for rank in range(2):
            sampler = EpochSampler(len(dataset), 50, seed=7, rank=rank, world_size=2)
            assert sampler.steps_per_epoch == 30
            for batch in sampler.epoch(epoch):
                seen += batch
                _, batch_labels = dataset.read(np.array(batch))
                shard = np.array(batch) // 1000
                assert [position[(s, label)] for s, label in zip(shard, batch_labels, strict=True)] == batch
        assert sorted(seen) == list(range(3000))  # every image exactly once
        orders.append(seen)
    assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch

    # A restarted run (a new sampler with the same seed) follows the same order; another seed does not.
    again = [i for rank in range(2) for batch in EpochSampler(3000, 50, 7, rank, 2).epoch(1) for i in batch]
    assert again == orders[1]
    assert [i for batch in EpochSampler(3000, 50, 8, 0, 2).epoch(1) for i in batch] != orders[1][:1500]


def test_the_global_batch_does_not_depend_on_the_number_of_processes():
    """Global batch b holds the same examples for 1, 2 or 4 processes, in DistributedSampler's order; with a
    remainder no example repeats and fewer than one global batch is left out."""
    n, global_batch = 1003, 40
    single = list(EpochSampler(n, global_batch, seed=3).epoch(2))
    for world in (2, 4):
        ranks = [list(EpochSampler(n, global_batch // world, 3, rank, world).epoch(2)) for rank in range(world)]
        assert all(len(r) == len(single) == n // global_batch for r in ranks)
        for b, batch in enumerate(single):
            assert sorted(batch) == sorted(i for r in ranks for i in r[b])
            # Rank r holds positions r, r + W, ... of the global batch (what ShardedNoise assumes).
            assert all(ranks[r][b] == batch[r::world] for r in range(world))
        flat = [i for r in ranks for batch in r for i in batch]
        assert len(set(flat)) == len(flat) and n - len(flat) < global_batch
        reference = DistributedSampler(range(n), num_replicas=world, rank=1, shuffle=True, seed=3, drop_last=True)
        reference.set_epoch(2)
        assert [i for batch in ranks[1] for i in batch] == list(reference)[:len(ranks[1]) * global_batch // world]


def test_an_epoch_resumed_at_batch_k_continues_the_same_order():
    sampler = EpochSampler(500, 16, seed=0, rank=1, world_size=2)
    full = list(sampler.epoch(4))
    assert list(EpochSampler(500, 16, seed=0, rank=1, world_size=2).epoch(4, start=9)) == full[9:]
    assert len(sampler.epoch(4, start=9)) == len(full) - 9
    with pytest.raises(ValueError, match="outside an epoch of 15 batches"):
        sampler.epoch(0, start=16)


QUIET = {"progress": False, "val_every": 1000, "sample_every": 1000, "num_samples": 4, "val_max_examples": 32,
         "eval_samples": 1}


def test_training_on_converted_data_resumes_mid_epoch_exactly(registry, tmp_path):
    """12 straight steps == 7 steps, a checkpoint, a fresh trainer and 5 more (step 7 is inside the second epoch of
    5 batches): bit-identical weights and optimizer state, and the same per-step losses."""
    write_imagenet(tmp_path / "batches", files=2, per_file=90, side=8, val=40)
    convert_imagenet(tmp_path / "batches", tmp_path / "converted")
    train = {"steps": 12, "batch_size": 32, "warmup_steps": 2, "hflip": True, "checkpoint_every": 1000,
             "log_every": 1, **QUIET}
    run = make_run_config("tiny", "converted", data={"root": str(tmp_path / "converted")}, train=train,
                          registry=registry)
    straight = Trainer(run, tmp_path / "straight", registry=registry)
    assert straight.steps_per_epoch == 5
    straight.fit()
    first = Trainer(run, tmp_path / "resumed", registry=registry)
    first.fit(until=7)
    assert read_checkpoint(tmp_path / "resumed")["data_position"] == {"epoch": 1, "batch": 2, "train_examples": 180}
    resumed = Trainer.resume(tmp_path / "resumed", registry=registry)
    resumed.fit()
    assert all(torch.equal(a, b) for a, b in zip(straight.flow.state_dict().values(),
                                                 resumed.flow.state_dict().values(), strict=True))

    def losses(folder):
        rows = [json.loads(line) for line in (tmp_path / folder / "metrics.jsonl").read_text().splitlines()]
        return [(row["step"], row["loss"]) for row in rows if "loss" in row]

    assert losses("resumed") == losses("straight") and len(losses("straight")) == 12


def test_resuming_on_a_dataset_of_another_size_is_refused(registry, tmp_path):
    write_imagenet(tmp_path / "batches", files=2, per_file=40, side=8, val=10)
    convert_imagenet(tmp_path / "batches", tmp_path / "converted")
    run = make_run_config("tiny", "converted", data={"root": str(tmp_path / "converted")},
                          train={"steps": 2, "batch_size": 16, **QUIET}, registry=registry)
    Trainer(run, tmp_path / "run", registry=registry).fit(until=1)
    state = read_checkpoint(tmp_path / "run")
    state["data_position"]["train_examples"] = 81
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match="trained on 81 training examples, the dataset now has 80"):
        Trainer.resume(tmp_path / "run", registry=registry)


# ------------------------------------------------------------------------------------------------ memory

MEMORY_PROBE = textwrap.dedent("""
    import sys
    import torch
    from torch.utils.data import DataLoader
    from nfkit_core.plugins import get_registry
    from nfkit_core.data.imagenet_npz import ImagenetNpzConfig
    from nfkit_core.data.preprocess import uniform_dequantize
    from nfkit_core.data.sampler import EpochSampler

    def resident_mib():
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return {key: int(status[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")}

    torch.set_num_threads(1)
    uniform_dequantize(torch.zeros(64, 3, 64, 64), 256)  # first-use allocations of torch happen before the baseline
    base = resident_mib()
    config = ImagenetNpzConfig(sys.argv[1], in_memory=sys.argv[2] == "memory")
    dataset = get_registry().load_dataset("imagenet-npz", config, "train")
    sampler, peak = EpochSampler(len(dataset), 64, seed=0), 0.0
    for epoch in range(2):
        for x, labels in DataLoader(dataset, batch_sampler=sampler.epoch(epoch)):
            x = uniform_dequantize(x, 256)
            peak = max(peak, resident_mib()["RssAnon"] - base["RssAnon"])
    print(peak, resident_mib()["RssFile"] - base["RssFile"])
""")


def test_reading_a_converted_set_keeps_resident_memory_near_one_batch(registry, tmp_path):
    """4,000 images of 3x64x64 (47 MiB, 62 batches of 64), read twice over with dequantization: the private
    (anonymous) resident memory of the process grows by less than 24 MiB = 8 float batches of 3 MiB (measured: 9.3
    to 13.3 MiB); loading the same batches into memory grows it by more than the data (measured: 51 MiB). The
    shards' pages count as RssFile: page cache, shared by every process of the machine and reclaimable.

    glibc's malloc keeps freed batch buffers in its heap once its dynamic mmap threshold has risen (44 to 50 MiB over
    one to three passes in a probe); a fixed threshold makes the measurement show the memory that is live.
    """
    source = write_imagenet(tmp_path / "batches", files=4, per_file=1000, side=64, val=10)
    registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(source)), "train")  # converts, outside the measurement
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}

    def growth(mode):
        result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(source), mode], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        anon, file_backed = map(float, result.stdout.split())
        return anon, file_backed

    data_mib = 4000 * 3 * 64 * 64 / 2**20
    memory_mapped, page_cache = growth("memmap")
    in_memory, _ = growth("memory")
    assert memory_mapped < 24, memory_mapped
    assert in_memory > data_mib, in_memory
    assert page_cache > 0.9 * data_mib  # every page was read, through the page cache
