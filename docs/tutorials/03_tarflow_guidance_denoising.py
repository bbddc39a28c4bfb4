"""
TarFlow: classifier-free guidance and denoising
===============================================

TarFlow (Zhai et al. 2025) is trained on images with Gaussian noise added (noise augmentation) and samples with
classifier-free guidance. This tutorial trains a tiny class-conditional TarFlow on the 8x8 digits with labels
dropped 10% of the time, then measures what guidance does to the samples and what the score-based denoising step
does to noisy images.

It shows the sampling options of TarFlow's blocks (``guidance``, ``guide_what``), a flow's ``sample(...,
denoise=True)`` and ``denoise``, and ``train.label_dropout``. It needs ``nfkit-core[train]`` and ``nfkit-tarflow``.
"""

# %%
# A tiny class-conditional TarFlow
# --------------------------------
# ``train.label_dropout=0.1`` replaces one label in ten by ``-1`` during training, so the same model also learns
# the unconditional density (label ``-1`` selects the mean class embedding): classifier-free guidance needs both.
# The ``digits-tiny`` preset (patches of 2x2, 2 blocks of one Transformer layer, 32 channels) is trained with
# Gaussian noise of standard deviation ``noise_std = 0.1`` on the digits scaled to :math:`[-1, 1]` (its levels
# are 0.125 apart).
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.plugins import get_registry
from nfkit_core.train import Trainer, make_run_config

torch.set_num_threads(1)
run_dir = Path(tempfile.mkdtemp(prefix="nf-tutorial-")) / "tarflow"
run = make_run_config("tarflow", "digits", preset="digits-tiny",
                      train={"steps": 500, "lr": 2e-3, "class_conditional": True, "label_dropout": 0.1,
                             "val_every": 500, "eval_samples": 1, "progress": False})
report = Trainer(run, run_dir).fit()
flow = load_checkpoint(run_dir)
print(f"noise_std {flow.noise_std}; sampling options: {sorted(flow.sampling_options())}")

# %%
# Guidance
# --------
# With weight :math:`w`, each block predicts its log-scale and shift twice, with the label and without it, and
# uses :math:`(1 + w)\,\mathrm{conditional} - w\,\mathrm{unconditional}` (``guide_what="ab"``: both
# predictions); the two passes share one batched forward. :math:`w = 0` is plain conditional sampling.
#
# How strongly do the samples follow their label? The flow can tell: score each sample under every class,
# :math:`\log p(x \mid c)`, and take the most likely class (Bayes' rule with uniform class priors). Below, 200
# samples of each of the classes 0..9 (2,000 in all) per guidance weight; the share whose most likely class is the
# one they were drawn with should rise with :math:`w`.
def bayes_accuracy(x: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        scores = torch.stack([flow.log_prob(x, torch.full_like(labels, c)) for c in range(10)])
    return (scores.argmax(dim=0) == labels).float().mean().item()


labels = torch.arange(10).repeat(200)
grids = {}
for weight in (0.0, 1.0, 3.0):
    with torch.no_grad():
        x = flow.sample(len(labels), labels, guidance=weight, denoise=True,
                        generator=torch.Generator().manual_seed(0))
    grids[weight] = x[:30]  # three of each class
    print(f"guidance w={weight}: {bayes_accuracy(x, labels):.1%} of the samples are most likely under their own "
          f"class")

fig, axes = plt.subplots(3, 1, figsize=(6, 6.6))
for axis, (weight, x) in zip(axes, grids.items()):
    axis.imshow(make_grid((x + 1) / 2, nrow=10, padding=1, pad_value=0.5).clamp(0, 1)[0], cmap="gray", vmin=0, vmax=1)
    axis.set_title(f"guidance w={weight}: classes 0-9 in each row")
    axis.axis("off")
fig.tight_layout()

# %%
# Denoising
# ---------
# A model of noisy data :math:`y = x + \sigma\varepsilon` knows the posterior mean of the clean data
# (Tweedie's formula): :math:`E[x \mid y] = y + \sigma^2 \nabla_y \log p(y)`. ``flow.denoise(y, labels)`` takes
# this one step with the training ``noise_std``; ``sample(..., denoise=True)``, used above, finishes every sample
# with it. Its effect can be measured on the test digits: add noise of :math:`\sigma = 0.1` and compare the mean
# squared error to the clean images before (about :math:`\sigma^2 = 0.01`) and after the step.
test = get_registry().load_dataset("digits", run.data, "test")
clean = torch.stack([test[i][0] for i in range(len(test))]) / 8 - 1  # levels 0..16 -> [-1, 1]
test_labels = torch.stack([test[i][1] for i in range(len(test))])
noisy = clean + flow.noise_std * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
denoised = flow.denoise(noisy, test_labels)
print(f"{len(clean)} test digits, mean squared error to the clean image: noisy {(noisy - clean).square().mean():.4f}, "
      f"denoised {(denoised - clean).square().mean():.4f}")

fig, axes = plt.subplots(3, 8, figsize=(7, 2.9))
for row, (name, images) in enumerate((("clean", clean), ("noisy", noisy), ("denoised", denoised))):
    for column in range(8):
        axes[row, column].imshow(((images[column, 0] + 1) / 2).clamp(0, 1), cmap="gray", vmin=0, vmax=1)
        axes[row, column].axis("off")
    axes[row, 0].set_title(name, fontsize=9, loc="left")
fig.tight_layout()
