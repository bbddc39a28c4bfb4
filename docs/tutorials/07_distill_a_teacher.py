"""
Distill a teacher with nf-distill
=================================

``nfkit-distill`` trains a small *student* flow to match the intermediate latents of a larger *teacher* as well as
to fit the data (Walton et al., *Distilling Normalizing Flows*). This tutorial trains a Glow teacher on the 8x8
digits, distills it into a Glow with half the steps and half the width by ILKD, and trains the same student by
likelihood alone for comparison: the Python side of ``nf distill --teacher RUN --loss ilkd``
(:doc:`/guides/distilling` explains the method and the pairing rule).

It shows :func:`nfkit_distill.distill`, the pairing (:func:`nfkit_distill.align` over the flows'
``matchable_intermediates``), :func:`nfkit_distill.ilkd_loss`, and a flow's ``intermediates``. It needs
``nfkit-core[train]``, ``nfkit-glow-maf`` and ``nfkit-distill``.
"""

# %%
# Teacher
# -------
# Glow's ``digits-tiny`` preset: 2 levels of 4 steps, 32 hidden channels, 300 steps. The students below train
# for 200.
import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

from nfkit_core.checkpoint import load_checkpoint, read_checkpoint
from nfkit_core.data import Preprocessing
from nfkit_core.plugins import get_registry
from nfkit_core.train import Trainer, make_run_config
from nfkit_distill import align, distill, ilkd_loss

torch.set_num_threads(1)
runs = Path(tempfile.mkdtemp(prefix="nf-tutorial-"))
schedule = {"steps": 200, "lr": 2e-3, "val_every": 200, "eval_samples": 1, "progress": False}
teacher_run = make_run_config("glow", "digits", preset="digits-tiny", train={**schedule, "steps": 300})
teacher_report = Trainer(teacher_run, runs / "teacher").fit()

# %%
# Student, distilled
# ------------------
# The student keeps the teacher's 2 levels (the pairing needs equal level counts) with 2 steps per level and 16
# hidden channels. :func:`~nfkit_distill.distill` trains it on the teacher's data for 200 steps with the
# loss :math:`0.9\,\mathrm{NLL} + 0.1\,L_\mathrm{ILKD}` (eq. 15 with the paper's ILKD weights; the NLL in bits/dim),
# printing the matched pairs before it starts.
student = {"steps_per_level": 2, "hidden_channels": 16}
distilled_report = distill(runs / "teacher", runs / "distilled", preset="digits-tiny", model=student, loss="ilkd",
                           train=schedule)

# %%
# Student, likelihood only
# ------------------------
# The same student, steps, schedule and seed, trained by the trainer alone: the baseline distillation has to beat.
plain_report = Trainer(make_run_config("glow", "digits", preset="digits-tiny", model=student, train=schedule),
                       runs / "plain").fit()

# %%
# What distillation changed
# -------------------------
# First the test bits/dim (the trainer's report; standard errors about 0.015 on these 180 images) and the sizes.
teacher, distilled, plain = (load_checkpoint(runs / name) for name in ("teacher", "distilled", "plain"))
for name, flow, report in (("teacher", teacher, teacher_report), ("distilled student", distilled, distilled_report),
                           ("likelihood-only student", plain, plain_report)):
    print(f"{name:>24}: {sum(p.numel() for p in flow.parameters()):>6,} parameters, test {report['test_bpd']:.4f} "
          f"bits/dim")

# %%
# Then what the distillation loss is about: how far each student's intermediate latents lie from the teacher's
# on the test images. :func:`~nfkit_distill.align` pairs the flows' declared intermediates (for Glow, the latent
# each level passes on), ``intermediates`` computes them, and :func:`~nfkit_distill.ilkd_loss` is the mean squared
# distance averaged over the pairs. A student trained by likelihood alone has no reason to put its latents where the
# teacher puts its own; the distilled one was trained to.
pairs = align(teacher.matchable_intermediates, distilled.matchable_intermediates)
print("pairs (student <- teacher):", [(pair.student, pair.teacher) for pair in pairs])

test = get_registry().load_dataset("digits", teacher_run.data, "test")
levels = torch.stack([test[i][0] for i in range(len(test))])
preprocessing = Preprocessing(**read_checkpoint(runs / "teacher")["preprocessing"])  # uniform dequantization
torch.manual_seed(0)
x, _ = preprocessing(levels, torch.zeros(len(levels)), train=False)
with torch.no_grad():
    teacher_latents = teacher.intermediates(x, names=[pair.teacher for pair in pairs])
    for name, flow in (("distilled", distilled), ("likelihood-only", plain)):
        student_latents = flow.intermediates(x, names=[pair.student for pair in pairs])
        distance = ilkd_loss([teacher_latents[p.teacher] for p in pairs], [student_latents[p.student] for p in pairs])
        print(f"ILKD distance to the teacher, {name} student: {distance:.3f}")

# %%
# The training log of the distilled student (``metrics.jsonl``) records the two terms of its loss every
# ``train.log_every`` steps, as ``distill_*`` entries:
rows = [json.loads(line) for line in (runs / "distilled" / "metrics.jsonl").read_text().splitlines()]
terms = [row for row in rows if any(key.startswith("distill_") for key in row)]
for row in (terms[0], terms[-1]):
    print({key: round(value, 3) for key, value in row.items()})

# %%
# Samples of the three, each from the same seeded generator:
fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
for axis, (name, flow) in zip(axes, (("teacher", teacher), ("distilled", distilled), ("likelihood only", plain))):
    with torch.no_grad():
        samples = flow.sample(32, generator=torch.Generator().manual_seed(0))
    grid = make_grid((samples + 1) / 2, nrow=8, padding=1, pad_value=0.5).clamp(0, 1)[0]
    axis.imshow(grid, cmap="gray", vmin=0, vmax=1)
    axis.set_title(name)
    axis.axis("off")
fig.tight_layout()
