"""Every command of docs/guides/large_datasets.rst, run on small synthetic data in the real layouts.

The commands are read from the page itself. What cannot run as written on a CPU test machine is substituted, and
only that: the data folders become synthetic ones (ImageNet ``.npz`` batches of 8x8 images, CIFAR-10 pickles, an
image folder), TarFlow's ``imagenet64`` preset becomes ``digits-tiny``, training runs 2 steps of batch 8 (resumed
to 4), ``--nproc_per_node 8`` becomes 2 (1 per "machine" for the two-machine command, whose two machines are two
``torchrun`` processes on this one, ``node0`` being 127.0.0.1), and the synthetic CIFAR-10 batches are converted with
``verify=false`` (they cannot match the official checksums).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from nfkit_core.cli import main

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "large_datasets.rst"
SMALL_RUN = ["--set", "train.steps=2", "--set", "train.batch_size=8", "--set", "train.progress=false",
             "--set", "train.val_every=2", "--set", "train.sample_every=2", "--set", "train.num_samples=4",
             "--set", "train.val_max_examples=16", "--set", "train.eval_samples=1", "--set", "train.warmup_steps=1"]


def guide_commands() -> list[str]:
    """The ``nf`` and ``torchrun`` lines of the page's bash blocks, in order."""
    blocks = re.findall(r"\.\. code-block:: bash\n\n((?:   .*\n)+)", GUIDE.read_text())
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith(("nf ", "torchrun "))]


def write_sources(data: Path) -> None:
    rng = np.random.default_rng(0)
    imagenet = data / "imagenet64"
    imagenet.mkdir(parents=True)
    for name, count in (("train_data_batch_1.npz", 48), ("train_data_batch_2.npz", 48), ("val_data.npz", 16)):
        np.savez(imagenet / name, data=rng.integers(0, 256, (count, 3 * 8 * 8), dtype=np.uint8),
                 labels=rng.integers(1, 1001, count))
    cifar = data / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(cifar / name, "wb") as file:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [1, 2, 3, 4]}, file)
    for split in ("train", "val", "test"):
        for label in ("cat", "dog"):
            (data / "afhq" / split / label).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                data / "afhq" / split / label / "0.png")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def localize(command: str, data: Path, home: Path) -> list[str]:
    words = [re.sub(r"(^|=)~?/data/", rf"\g<1>{data}/", w) for w in shlex.split(command)]
    words = [f"{home}/{w}" if w.startswith("runs/") else w for w in words]
    words = ["digits-tiny" if w == "imagenet64" and words[i - 1] == "--preset" else w for i, w in enumerate(words)]
    if words[0] == "torchrun":
        words = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
    if "cifar10" in words:
        words += ["--set", "verify=false"]  # synthetic batches, not the official files
    if "train" in words and "--resume" in words:
        words += ["--set", "train.steps=4"]
    elif "train" in words:
        words += SMALL_RUN
    return words


def run(words: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(words, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def test_every_command_of_the_guide_runs(tmp_path, capsys):
    data, home = tmp_path / "data", tmp_path
    write_sources(data)
    commands = guide_commands()
    assert len(commands) == 9
    for command in commands:
        words = localize(command, data, home)
        if "--nnodes" in words:  # two machines: two torchrun processes with node ranks 0 and 1, one process each
            port = str(free_port())
            nodes = []
            for rank in ("0", "1"):
                node = [rank if words[i - 1] == "--node_rank" else w for i, w in enumerate(words)]
                node = ["127.0.0.1" if w == "node0" else port if w == "29500" else w for w in node]
                node = ["1" if node[i - 1] == "--nproc_per_node" else w for i, w in enumerate(node)]
                nodes.append(subprocess.Popen(node, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            outputs = [node.communicate(timeout=300) for node in nodes]
            assert all(node.returncode == 0 for node in nodes), command + "\n" + "\n".join(
                out[-2000:] + err[-2000:] for out, err in outputs)
            continue
        if words[1:3] == ["-m", "torch.distributed.run"]:
            words = ["2" if words[i - 1] == "--nproc_per_node" else w for i, w in enumerate(words)]
        if words[0] == "nf":  # in this process (the same code as the nf script, without a second start-up)
            assert main(words[1:]) == 0, command
            if command.startswith("nf data info"):
                out = capsys.readouterr().out
                assert "train: 96 images in 2 shard(s)" in out and "test: 16 images" in out
            continue
        result = run(words)
        assert result.returncode == 0, command + "\n" + result.stdout[-3000:] + result.stderr[-3000:]

    assert (data / "imagenet64" / "nfkit-converted" / "imagenet-npz" / "meta.json").is_file()  # on first use
    assert json.loads((data / "afhq64-nf" / "meta.json").read_text())["shape"] == [3, 64, 64]
    for run_dir, processes, steps in (("in64", 1, 4), ("in64-npz", 1, 2), ("in64-8gpus", 2, 2),
                                      ("in64-2nodes", 2, 2)):
        report = json.loads((home / "runs" / run_dir / "report.json").read_text())
        assert (report["processes"], report["steps"], report["dataset"]) == (
            processes, steps, "imagenet-npz" if run_dir == "in64-npz" else "converted")
