"""
Evaluate a run with nf-eval
===========================

``report.json`` holds the trainer's bits/dim. ``nfkit-eval`` measures the rest, for any nf flow, and writes every
number with the protocol that produced it: likelihood bounds with standard errors, sample quality in a classifier's
features, latent interpolation, speed. This tutorial trains a small Glow on the 8x8 digits and evaluates it with
``nfkit_eval.evaluate_run``, the Python side of ``nf eval RUN`` (:doc:`/guides/evaluation` explains each
metric's protocol).

It shows ``evaluate_run``, :class:`~nfkit_eval.EvalOptions`, :class:`~nfkit_eval.Report` and
its :class:`~nfkit_eval.Measurement`\\ s, and the figures written next to ``eval.json``. It needs
``nfkit-core[train]``, ``nfkit-glow-maf`` and ``nfkit-eval``.
"""

# %%
# A run to evaluate
# -----------------
# Glow's ``digits-tiny`` preset, 250 steps: a weak model, which the numbers below should show.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from nfkit_core.train import Trainer, make_run_config
from nfkit_eval import EvalOptions, evaluate_run

torch.set_num_threads(1)
run_dir = Path(tempfile.mkdtemp(prefix="nf-tutorial-")) / "glow"
run = make_run_config("glow", "digits", preset="digits-tiny",
                      train={"steps": 250, "lr": 2e-3, "val_every": 250, "eval_samples": 1, "progress": False})
trained = Trainer(run, run_dir).fit()

# %%
# Evaluate it
# -----------
# Five metrics on the 180 test digits, every draw seeded (``seed=0``), so the evaluation reproduces:
#
# * ``bpd``: the single-sample bound, one draw of the uniform dequantization noise per image;
# * ``iwbo``: the importance-weighted bound over :math:`K = 16` draws of that noise, never looser than ``bpd``
#   (Burda et al. 2016); reported as ``bpd_iw``;
# * ``fid``: the Fréchet distance between 180 samples and the test images in the 64-d features of a small
#   classifier of the digits that nf-eval trains (and caches in the run folder) on first use: FD-digits, not
#   comparable with published FIDs (Inception-v3 features need images of at least 32x32);
# * ``prc``: precision (share of samples near the test images' manifold) and recall (share of test images near the
#   samples' manifold), Kynkäänniemi et al. 2019;
# * ``interp``: the Fréchet distance of images decoded from norm-preserving interpolations between the latents of
#   test pairs, at two temperatures.
report = evaluate_run(run_dir, metrics=["bpd", "iwbo", "fid", "prc", "interp"],
                      options=EvalOptions(seed=0, importance_samples=16, progress=False))
for measurement in report.measurements:
    print(f"{measurement.name:>32}: {measurement.formatted()} {measurement.unit}")

# %%
# The trainer's ``test_bpd`` is the same single-sample bound on the same images with other noise draws: the two
# agree within the standard error. The importance-weighted bound is lower (tighter): dequantization noise drawn
# once is a loose variational bound. For scale: Glow's ``digits`` preset trained for 1000 steps reaches 2.29
# bits/dim and an FD-digits of 26 under the same protocol (``benchmarks/results/eval_digits.md``).
bpd, bpd_iw = report["bpd"], report["bpd_iw"]
print(f"trainer's test_bpd {trained['test_bpd']:.4f}; nf-eval's bpd {bpd.value:.4f} ± {bpd.stderr:.4f}; "
      f"the importance-weighted bound is {bpd.value - bpd_iw.value:.4f} bits/dim tighter")
print(f"protocol of bpd_iw: {bpd_iw.protocol}")

# %%
# What it wrote
# -------------
# ``evaluate_run`` writes into ``RUN/eval``: ``eval.json`` (the header: architecture, step, versions, options;
# each metric's value, standard error, unit and protocol), ``eval.md`` (the same as a table) and the figures.
eval_dir = run_dir / "eval"
print(sorted(path.name for path in eval_dir.iterdir()))
print("\n".join(line for line in (eval_dir / "eval.md").read_text().splitlines() if line.startswith("|")))

fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
for axis, name in zip(axes, ("samples.png", "nearest_neighbours.png", "interpolation_T1.png")):
    axis.imshow(plt.imread(eval_dir / name))
    axis.set_title(name)
    axis.axis("off")
fig.tight_layout()
