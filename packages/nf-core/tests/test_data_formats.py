"""Every dataset format: small real files are written, read back through the registry, and checked value by value;
a missing path, a wrong layout and a corrupt file each give a message that names the file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from nfkit_core.data import BUILTIN_DATASETS, DataError
from nfkit_core.data.cifar10 import Cifar10Config
from nfkit_core.data.digits import DigitsConfig
from nfkit_core.data.image_folder import ImageFolderConfig
from nfkit_core.data.imagenet_npz import ImagenetNpzConfig
from nfkit_core.data.tabular import TabularConfig
from nfkit_core.data.toy2d import DISTRIBUTIONS, Toy2dConfig
from nfkit_core.plugins import UnknownNameError


def test_every_builtin_dataset_is_registered_by_nf_core(registry):
    assert registry.datasets.names() == sorted(spec.name for spec in BUILTIN_DATASETS)
    assert set(registry.datasets.names()) == {"digits", "image-folder", "cifar10", "imagenet-npz", "converted",
                                              "tabular", "toy2d"}
    assert {e.distribution for e in registry.datasets.entries()} == {"nfkit-core"}


def test_unknown_dataset_lists_the_available_ones(registry):
    with pytest.raises(UnknownNameError, match="unknown dataset 'mnist'; available: cifar10, converted, digits"):
        registry.load_dataset("mnist")


def test_unknown_split_is_an_error(registry):
    with pytest.raises(DataError, match="has no split 'validation'; splits: train, val, test"):
        registry.load_dataset("digits", split="validation")


# ---------------------------------------------------------------------------------------------------------- digits

def test_digits_splits_are_disjoint_and_hold_17_levels(registry):
    from sklearn.datasets import load_digits

    parts = {s: registry.load_dataset("digits", DigitsConfig(), s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in parts.items()} == {"train": 1437, "val": 180, "test": 180}
    info = parts["train"].info
    assert (info.shape, info.num_classes, info.num_bins) == ((1, 8, 8), 10, 17)
    x, label = parts["train"][0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8) and label.dtype == torch.long
    everything = torch.cat([d.data.float().reshape(len(d), -1) for d in parts.values()])
    reference = torch.as_tensor(load_digits().data, dtype=torch.float32)
    # Same multiset of images: sort rows lexicographically via a stable key.
    key = lambda rows: rows[np.lexsort(rows.numpy().T[::-1])]  # noqa: E731
    assert torch.equal(key(everything), key(reference))
    assert everything.min() == 0 and everything.max() == 16 and torch.equal(everything, everything.round())


def test_digits_split_depends_only_on_the_split_seed(registry):
    first = registry.load_dataset("digits", DigitsConfig(split_seed=3), "val")
    again = registry.load_dataset("digits", DigitsConfig(split_seed=3), "val")
    other = registry.load_dataset("digits", DigitsConfig(split_seed=4), "val")
    assert torch.equal(first.data, again.data) and not torch.equal(first.data, other.data)


# ---------------------------------------------------------------------------------------------------------- toy2d

@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_toy2d_distributions(registry, distribution):
    config = Toy2dConfig(distribution=distribution, train_size=500, eval_size=100, seed=1)
    train = registry.load_dataset("toy2d", config, "train")
    val = registry.load_dataset("toy2d", config, "val")
    assert train.data.shape == (500, 2) and val.data.shape == (100, 2)
    assert train.info.shape == (2,) and train.info.num_bins is None and train.info.num_classes == 0
    assert torch.isfinite(train.data).all() and train.data.abs().max() < 8
    assert (train.labels == -1).all()
    assert torch.equal(train.data, registry.load_dataset("toy2d", config, "train").data)
    assert not torch.equal(val.data, registry.load_dataset("toy2d", config, "test").data)


def test_toy2d_checkerboard_fills_alternate_squares(registry):
    points = registry.load_dataset("toy2d", Toy2dConfig("checkerboard", 4000, 10), "train").data
    squares = torch.floor(points / 2)  # the unit squares of FFJORD's board, scaled by 2
    assert ((squares[:, 0] + squares[:, 1]) % 2 == 0).all()


def test_toy2d_unknown_distribution(registry):
    with pytest.raises(DataError, match="unknown toy2d distribution 'spirals'; available: moons, circles"):
        registry.load_dataset("toy2d", Toy2dConfig(distribution="spirals"), "train")


# -------------------------------------------------------------------------------------------------------- tabular

def test_tabular_folder_of_npy_files(registry, tmp_path):
    arrays = {s: np.random.default_rng(i).normal(size=(10 + i, 3)) for i, s in enumerate(("train", "val", "test"))}
    for split, array in arrays.items():
        np.save(tmp_path / f"{split}.npy", array)
    for split, array in arrays.items():
        dataset = registry.load_dataset("tabular", TabularConfig(str(tmp_path), standardize=False), split)
        assert dataset.info.shape == (3,) and dataset.info.num_bins is None
        assert torch.equal(dataset.data, torch.as_tensor(array, dtype=torch.float32))


def test_tabular_npz_file(registry, tmp_path):
    train, val, test = (np.arange(12.0).reshape(6, 2) + k for k in range(3))
    np.savez(tmp_path / "power.npz", train=train, val=val, test=test)
    dataset = registry.load_dataset("tabular", TabularConfig(str(tmp_path / "power.npz"), standardize=False), "test")
    assert torch.equal(dataset.data, torch.as_tensor(test, dtype=torch.float32))
    x, label = dataset[1]
    assert x.tolist() == [4.0, 5.0] and label.item() == -1


def test_tabular_splits_are_standardised_with_the_training_statistics(registry, tmp_path):
    rng = np.random.default_rng(0)
    scale, shift = np.array([1.0, 100.0, 0.01]), np.array([5.0, -3.0, 0.0])
    arrays = {s: rng.normal(size=(200, 3)) * scale + shift for s in ("train", "val", "test")}
    np.savez(tmp_path / "data.npz", **arrays)
    train = registry.load_dataset("tabular", TabularConfig(str(tmp_path / "data.npz")), "train")
    test = registry.load_dataset("tabular", TabularConfig(str(tmp_path / "data.npz")), "test")
    torch.testing.assert_close(train.data.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.data.std(0), torch.ones(3), atol=1e-5, rtol=0)
    mean, std = arrays["train"].mean(0), arrays["train"].std(0, ddof=1)  # the training split's, not the test's
    torch.testing.assert_close(test.data, torch.as_tensor((arrays["test"] - mean) / std, dtype=torch.float32))
    assert test.log_abs_det == pytest.approx(-np.log(std).sum(), rel=1e-6)  # log p(x) = log p(z) + log_abs_det
    np.savez(tmp_path / "constant.npz", train=np.ones((5, 2)), val=np.ones((5, 2)), test=np.ones((5, 2)))
    with pytest.raises(DataError, match=r"columns \[0, 1\] of the training split .*constant.npz.*standardize=false"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path / "constant.npz")), "test")


def test_tabular_splits_of_different_widths_are_refused_at_load_naming_the_file(registry, tmp_path):
    np.save(tmp_path / "train.npy", np.zeros((8, 3)))
    np.save(tmp_path / "val.npy", np.zeros((8, 3)))
    np.save(tmp_path / "test.npy", np.zeros((8, 4)))
    with pytest.raises(DataError, match=f"training split has 3 columns, but {tmp_path / 'test.npy'} has 4 columns"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path)), "train")  # checked when train is loaded
    np.savez(tmp_path / "data.npz", train=np.zeros((8, 3)), val=np.zeros((8, 2)), test=np.zeros((8, 3)))
    with pytest.raises(DataError, match=r"data.npz \(array 'val'\) has 2 columns"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path / "data.npz")), "train")


def test_tabular_errors_name_the_file(registry, tmp_path):
    with pytest.raises(DataError, match=r"needs a path: set data.root=PATH"):
        registry.load_dataset("tabular", TabularConfig(), "train")
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'} does not exist"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path / "nowhere")), "train")
    np.save(tmp_path / "train.npy", np.zeros((4, 2)))
    with pytest.raises(DataError, match=f"{tmp_path / 'val.npy'} not found .*train.npy, val.npy, test.npy"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path)), "val")
    np.save(tmp_path / "val.npy", np.zeros((4, 2)))
    np.save(tmp_path / "test.npy", np.zeros((4, 2, 2)))
    with pytest.raises(DataError, match=r"has shape \(4, 2, 2\) .* expected a numeric \(N, D\) array"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path), standardize=False), "test")
    (tmp_path / "val.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=f"{tmp_path / 'val.npy'} is not a readable NumPy file"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path)), "val")
    np.save(tmp_path / "single.npy", np.zeros((2, 2)))
    with pytest.raises(DataError, match="single.npy holds a single array, not named arrays"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path / "single.npy")), "train")
    np.savez(tmp_path / "only.npz", train=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"only.npz has arrays \['train'\], missing \['test', 'val'\]"):
        registry.load_dataset("tabular", TabularConfig(str(tmp_path / "only.npz")), "test")


# -------------------------------------------------------------------------------------------------------- cifar10

def write_cifar(root, per_file=3):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        batch = {"batch_label": name, "data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 "labels": [(k + i) % 10 for i in range(per_file)]}
        with open(folder / name, "wb") as file:
            pickle.dump(batch, file)
    return folder


def test_cifar10_python_batches(registry, tmp_path):
    folder = write_cifar(tmp_path)
    train = registry.load_dataset("cifar10", Cifar10Config(str(tmp_path), verify=False), "train")
    test = registry.load_dataset("cifar10", Cifar10Config(str(tmp_path), verify=False), "test")
    assert len(train) == 15 and len(test) == 3
    assert (train.info.shape, train.info.num_classes, train.info.num_bins) == ((3, 32, 32), 10, 256)
    with open(folder / "data_batch_2", "rb") as file:
        raw = pickle.load(file)
    x, label = train[4]  # the second image of data_batch_2
    flat = raw["data"][1]
    assert label.item() == raw["labels"][1]
    # Row layout: 1024 red values, then green, then blue, each row-major over 32 x 32.
    assert x[1, 2, 5].item() == flat[1024 + 2 * 32 + 5] and x[2, 31, 0].item() == flat[2048 + 31 * 32]
    assert torch.equal(x, torch.as_tensor(flat.reshape(3, 32, 32), dtype=torch.float32))


def test_cifar10_checks_the_official_checksums_by_default(registry, tmp_path):
    write_cifar(tmp_path)
    with pytest.raises(DataError, match="data_batch_1 does not match the MD5 sum of the official CIFAR-10 file"):
        registry.load_dataset("cifar10", Cifar10Config(str(tmp_path)), "train")


def test_cifar10_errors_name_the_file(registry, tmp_path):
    with pytest.raises(DataError, match="needs a path: set data.root=PATH"):
        registry.load_dataset("cifar10", Cifar10Config(verify=False), "train")
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 not found .*cifar-10-batches-py/ with data_batch_1..5"):
        registry.load_dataset("cifar10", Cifar10Config(str(tmp_path), verify=False), "train")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 batch"):
        registry.load_dataset("cifar10", Cifar10Config(str(tmp_path), verify=False), "test")
    with open(folder / "test_batch", "wb") as file:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, file)
    with pytest.raises(DataError, match=r"'data' has shape \(2, 100\)"):
        registry.load_dataset("cifar10", Cifar10Config(str(tmp_path), verify=False), "test")


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar10_refuses_pickles_that_could_run_code(registry, tmp_path, capsys):
    folder = write_cifar(tmp_path)
    with open(folder / "test_batch", "wb") as file:
        pickle.dump({"data": Exploit(), "labels": []}, file)
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        registry.load_dataset("cifar10", Cifar10Config(str(tmp_path), verify=False), "test")
    assert "must never run" not in capsys.readouterr().out


def test_cifar10_reads_numpy_1_pickles(registry, tmp_path):
    """The official files were pickled by NumPy 1 (module ``numpy.core.multiarray``)."""
    folder = write_cifar(tmp_path)
    stream = pickle.dumps({"data": np.full((2, 3072), 7, np.uint8), "labels": [3, 4]}, protocol=2)
    stream = stream.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in stream
    (folder / "test_batch").write_bytes(stream)
    test = registry.load_dataset("cifar10", Cifar10Config(str(tmp_path), verify=False), "test")
    assert test.labels.tolist() == [3, 4] and (test.data == 7).all()


# --------------------------------------------------------------------------------------------------- imagenet-npz

def write_imagenet(folder, batches=2, per_file=4, side=8):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    names = [f"train_data_batch_{k}.npz" for k in range(1, batches + 1)] + ["val_data.npz"]
    for name in names:
        np.savez(folder / name, data=rng.integers(0, 256, (per_file, 3 * side * side), dtype=np.uint8),
                 labels=rng.integers(1, 1001, per_file))
    return folder


def test_imagenet_npz_batches(registry, tmp_path):
    folder = write_imagenet(tmp_path / "Imagenet8_train_npz")
    config = ImagenetNpzConfig(str(tmp_path), in_memory=True)
    train = registry.load_dataset("imagenet-npz", config, "train")
    val = registry.load_dataset("imagenet-npz", config, "val")
    assert len(train) == 8 and len(val) == 4
    assert (train.info.shape, train.info.num_classes, train.info.num_bins) == ((3, 8, 8), 1000, 256)
    raw = np.load(folder / "train_data_batch_2.npz")
    x, label = train[5]  # second image of batch 2
    assert label.item() == raw["labels"][1] - 1
    # Red plane first: value (r, c) of channel k is data[k * 64 + r * 8 + c].
    assert x[1, 3, 4].item() == raw["data"][1][64 + 3 * 8 + 4]
    assert torch.equal(registry.load_dataset("imagenet-npz", config, "test").data, val.data)
    first = ImagenetNpzConfig(str(tmp_path), train_files=1, in_memory=True)
    assert len(registry.load_dataset("imagenet-npz", first, "train")) == 4


def test_imagenet_npz_errors_name_the_file(registry, tmp_path):
    with pytest.raises(DataError, match="no train_data_batch_\\*.npz in"):
        registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(tmp_path)), "train")
    np.savez(tmp_path / "val_data.npz", images=np.zeros((2, 12), np.uint8))
    with pytest.raises(DataError, match=r"val_data.npz has arrays \['images'\], missing \['data', 'labels'\]"):
        registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(tmp_path)), "val")
    (tmp_path / "val_data.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="val_data.npz is not a readable .npz file"):
        registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(tmp_path)), "val")
    np.savez(tmp_path / "val_data.npz", data=np.zeros((2, 10), np.uint8), labels=np.ones(2))
    with pytest.raises(DataError, match=r"'data' is uint8 \(2, 10\)"):
        registry.load_dataset("imagenet-npz", ImagenetNpzConfig(str(tmp_path)), "val")


# --------------------------------------------------------------------------------------------------- image-folder

def write_image_folder(root):
    colors = {"cat": (200, 10, 10), "dog": (10, 200, 10)}
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        for name, color in colors.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                image = np.zeros((6, 10, 3), np.uint8)
                image[:, 2:8] = color  # the centred 6 x 6 square is coloured, the 2-pixel margins are black
                Image.fromarray(image).save(root / split / name / f"{i}.png")


def test_image_folder_crops_resizes_and_labels(registry, tmp_path):
    write_image_folder(tmp_path)
    train = registry.load_dataset("image-folder", ImageFolderConfig(str(tmp_path), image_size=6), "train")
    assert len(train) == 4 and (train.info.shape, train.info.num_classes, train.info.num_bins) == ((3, 6, 6), 2, 256)
    x, label = train[3]
    assert label.item() == 1  # "dog", the second class folder
    assert torch.equal(x, torch.tensor([10.0, 200.0, 10.0]).view(3, 1, 1).expand(3, 6, 6))
    small = registry.load_dataset("image-folder", ImageFolderConfig(str(tmp_path), image_size=3, channels=1), "val")
    x, label = small[0]
    assert x.shape == (1, 3, 3) and label.item() == 0
    grey = round(0.299 * 200 + 0.587 * 10 + 0.114 * 10)  # PIL's "L" conversion of the cat colour
    assert (x - grey).abs().max() <= 1


def test_image_folder_errors_name_the_file(registry, tmp_path):
    write_image_folder(tmp_path)
    with pytest.raises(ValueError, match="image-folder: channels must be 1 or 3, got 2"):
        registry.load_dataset("image-folder", ImageFolderConfig(str(tmp_path), channels=2), "train")
    (tmp_path / "test" / "bird").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "bird" / "0.png")
    with pytest.raises(DataError, match=r"has class folders \['bird', 'cat', 'dog'\], but the train split has"):
        registry.load_dataset("image-folder", ImageFolderConfig(str(tmp_path)), "test")
    val = registry.load_dataset("image-folder", ImageFolderConfig(str(tmp_path)), "val")
    (tmp_path / "val" / "cat" / "0.png").write_bytes(b"not a png")  # damaged after the load-time check
    with pytest.raises(DataError, match=f"{tmp_path / 'val' / 'cat' / '0.png'} is not a readable image"):
        val[0]
    other = tmp_path / "other"
    (other / "train").mkdir(parents=True)
    (other / "train" / "cat").mkdir()
    with pytest.raises(DataError, match=f"{other / 'train'}: Found no valid file for the classes cat"):
        registry.load_dataset("image-folder", ImageFolderConfig(str(other)), "train")
    with pytest.raises(DataError, match=f"{other / 'val'} is not a folder .*<root>/{{train,val,test}}/<class name>"):
        registry.load_dataset("image-folder", ImageFolderConfig(str(other)), "val")


def test_a_corrupt_image_is_found_at_load_naming_the_file(registry, tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n not really")
    with pytest.raises(DataError, match=f"{tmp_path / 'train' / 'dog' / 'broken.png'} is not a readable image"):
        registry.load_dataset("image-folder", ImageFolderConfig(str(tmp_path)), "train")
    with pytest.raises(ValueError, match="data.image_size must be at least 1, got 0"):
        registry.load_dataset("image-folder", ImageFolderConfig(str(tmp_path), image_size=0), "val")
