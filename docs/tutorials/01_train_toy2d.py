"""
Train a flow on 2-D toy data and plot its density
=================================================

This tutorial trains a masked autoregressive flow (MAF, Papamakarios et al. 2017) on the ``moons`` distribution of
nf's ``toy2d`` dataset with nf's trainer, from Python, and then looks at what it learned: the density
:math:`p(x)` on a grid, and samples.

It shows :func:`~nfkit_core.train.make_run_config`, :class:`~nfkit_core.train.Trainer`, the run folder's
``report.json``, :func:`~nfkit_core.checkpoint.load_checkpoint`, and a flow's ``log_prob`` and ``sample``. It needs
``nfkit-core[train]`` and ``nfkit-glow-maf``.
"""

# %%
# Train
# -----
# :func:`~nfkit_core.train.make_run_config` assembles the run that ``nf train`` builds from ``--arch maf --data
# toy2d --preset tabular-small``: the architecture's config (the preset ``tabular-small``: 5 MADEs with two hidden
# layers of 64 units), the dataset's (10,000 training points, 2,000 each for validation and test) and the trainer's.
# 400 steps of 256 points take a few seconds on one CPU thread.
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.plugins import get_registry
from nfkit_core.train import Trainer, make_run_config

torch.set_num_threads(1)
run_dir = Path(tempfile.mkdtemp(prefix="nf-tutorial-")) / "moons"
run = make_run_config("maf", "toy2d", preset="tabular-small", data={"distribution": "moons"},
                      train={"steps": 400, "batch_size": 256, "lr": 3e-3, "warmup_steps": 20, "val_every": 100,
                             "progress": False, "seed": 0})
report = Trainer(run, run_dir).fit()

# %%
# The trainer printed its summary above and wrote the run folder: ``checkpoint.pt``, ``metrics.jsonl``,
# ``report.json``, a scatter plot of samples and the loss curves. For continuous data the report's unit that
# means something is nats per example (bits/dim of continuous data can be negative and hide the dimension):
# ``test_nats`` is the negative log-likelihood of the 2,000 test points, :math:`-\frac{1}{N}\sum \log p(x_i)`.
print(sorted(path.name for path in run_dir.iterdir()))
print(f"test NLL: {report['test_nats']:.3f} nats per point")

# %%
# A yardstick: the best single Gaussian, fitted to the training points (their mean and covariance). The flow
# must beat it, because the moons are not a Gaussian. The registry loads the same splits the trainer used
# (``run.data`` is the dataset's config); each is a dataset of ``(x, label)`` pairs.
def whole_split(split: str) -> torch.Tensor:
    dataset = get_registry().load_dataset("toy2d", run.data, split)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


train_points, test_points = whole_split("train"), whole_split("test")
gaussian = torch.distributions.MultivariateNormal(train_points.mean(0), torch.cov(train_points.T))
print(f"best Gaussian: {-gaussian.log_prob(test_points).mean():.3f} nats per point")

# %%
# Load the checkpoint and look at the density
# -------------------------------------------
# :func:`~nfkit_core.checkpoint.load_checkpoint` rebuilds the flow from the run folder through the plugin registry,
# in eval mode. ``log_prob`` gives :math:`\log p(x)` in nats for a batch of shape ``(N, 2)``; evaluated on a
# 200 x 200 grid it shows the learned density. A normalizing flow's density integrates to one by construction
# (change of variables): the sum over the grid, times the area of a grid cell, checks it.
flow = load_checkpoint(run_dir)
print(f"the checkpoint's test NLL, recomputed: {-flow.log_prob(test_points).mean():.3f} nats per point")

side = torch.linspace(-4, 4, 200)
xx, yy = torch.meshgrid(side, side, indexing="xy")
grid = torch.stack([xx.flatten(), yy.flatten()], dim=1)
with torch.no_grad():
    density = flow.log_prob(grid).exp().reshape(200, 200)
cell_area = (side[1] - side[0]) ** 2
print(f"integral of p(x) over [-4, 4]^2: {density.sum() * cell_area:.4f}")

with torch.no_grad():
    samples = flow.sample(2_000, generator=torch.Generator().manual_seed(0))

fig, (left, middle, right) = plt.subplots(1, 3, figsize=(11, 3.6), sharex=True, sharey=True)
left.scatter(*test_points.T, s=1, alpha=0.5)
left.set_title("test points")
middle.imshow(density, origin="lower", extent=(-4, 4, -4, 4), cmap="viridis")
middle.set_title("learned density p(x)")
right.scatter(*samples.T, s=1, alpha=0.5, color="C1")
right.set_title("2,000 samples of the flow")
for axis in (left, middle, right):
    axis.set_aspect("equal")
fig.tight_layout()

# %%
# The training curve
# ------------------
# ``metrics.jsonl`` holds one JSON object per logged interval: the training loss (mean negative log-likelihood in
# nats) every ``train.log_every`` steps and the validation NLL every ``train.val_every`` steps.
rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
train_rows = [row for row in rows if "loss" in row]
val_rows = [row for row in rows if "val_nats" in row]
fig, axis = plt.subplots(figsize=(6, 3))
axis.plot([row["step"] for row in train_rows], [row["loss"] for row in train_rows], label="training loss")
axis.plot([row["step"] for row in val_rows], [row["val_nats"] for row in val_rows], "o-", label="validation NLL")
axis.set_xlabel("step")
axis.set_ylabel("nats per point")
axis.legend()
fig.tight_layout()
print(f"validation NLL at steps {[row['step'] for row in val_rows]}: "
      f"{[round(row['val_nats'], 3) for row in val_rows]}")
