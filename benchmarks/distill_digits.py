"""Knowledge distillation of a multi-scale Glow on 8x8 digits (Walton et al., "Distilling Normalizing Flows").

Teacher: Glow, 2 levels of K=8 steps, hidden 64, trained by likelihood. Student: Glow, 2 levels of K=2 steps, hidden
32. Arms (same steps, optimizer, schedule, seeds): likelihood only, LKD, ILKD, ILKD+SKD warm-started from ILKD
(see ``distill_experiment.py``), with the paper's weights: ILKD (0.9, 0.1), ILKD+SKD (0.85, 0.075, 0.075), NLL in
bits/dim. Reports test bits/dim (mean +- standard error over seeds), the share of the teacher-student gap closed, the
paired wins over the likelihood-only student, FD-digits and KD-digits (nfkit-eval: Frechet and kernel distances in its
digits classifier's features, as many samples at T=1 as the test split has images), parameters and the latency of
sampling one batch of 64. ``--tarflow`` adds the experiment beyond the paper: a TarFlow student with half the blocks
of a TarFlow teacher, matched per block. ``--clipped-skd`` adds an arm beyond the paper to the Glow experiment:
ILKD+SKD with gradient clipping (``train.grad_clip``, the whole run), the clip chosen on validation (seed 0).

    python benchmarks/distill_digits.py --output benchmarks/results/distill_digits.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distill_experiment import Setting, TunedArm, int_list, main

GLOW_TEACHER = {"num_levels": 2, "steps_per_level": 8, "hidden_channels": 64}
GLOW_STUDENT = {"num_levels": 2, "steps_per_level": 2, "hidden_channels": 32}
TARFLOW_TEACHER = {"patch_size": 2, "channels": 64, "num_blocks": 4, "layers_per_block": 2, "noise_std": 0.05}
TARFLOW_STUDENT = {**TARFLOW_TEACHER, "num_blocks": 2}
TINY = {"glow": ({"num_levels": 2, "steps_per_level": 2, "hidden_channels": 8},
                 {"num_levels": 2, "steps_per_level": 1, "hidden_channels": 8}),
        "tarflow": ({**TARFLOW_TEACHER, "channels": 16, "head_dim": 8, "layers_per_block": 1},
                    {**TARFLOW_TEACHER, "channels": 16, "head_dim": 8, "layers_per_block": 1, "num_blocks": 2})}
TRAIN = {"batch_size": 64, "lr": 1e-3, "warmup_steps": 50, "progress": False, "val_every": 250,
         "sample_every": 10**6, "log_every": 50, "precision": "fp32", "ema_decay": None}
OPTIONS = {"lkd": {}, "ilkd": {}, "ilkd+skd": {}}


def test_bpd(report: dict, split: str) -> float:
    return report[f"{split}_bpd"]


def sample_distances(run: Path, cache: Path) -> dict[str, float]:
    """FD-digits and KD-digits of a run's samples on the test split (nfkit-eval, its digits classifier cached in
    ``cache`` and trained once for all runs)."""
    from nfkit_eval import EvalOptions, evaluate, load_run

    flow, data, _ = load_run(run)
    report = evaluate(flow, data, ["fid", "kid"], EvalOptions(seed=0, extractor="classifier", progress=False),
                      cache_dir=cache)
    return {m.name: m.value for m in report.measurements}


def settings(args: argparse.Namespace) -> list[Setting]:
    def setting(name: str, teacher: dict, student: dict, arms: tuple[str, ...], tuned: TunedArm | None = None
                ) -> Setting:
        if args.tiny:
            teacher, student = TINY[name]
        return Setting(name, name, "digits", teacher, student, TRAIN, OPTIONS, test_bpd, "bits/dim", False,
                       arms=arms, extra=None if args.no_sample_metrics else sample_distances, tuned=tuned)

    clipped = None if args.clipped_skd is None else TunedArm("ilkd+skd-clip", "ilkd+skd", "grad_clip",
                                                             tuple(float(c) for c in args.clipped_skd))
    chosen = [setting("glow", GLOW_TEACHER, GLOW_STUDENT, ("nll", "lkd", "ilkd", "ilkd+skd"), clipped)
              ] if args.glow else []
    if args.tarflow:
        chosen.append(setting("tarflow", TARFLOW_TEACHER, TARFLOW_STUDENT, ("nll", "ilkd")))
    return chosen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tarflow", action="store_true", help="also run the TarFlow student experiment")
    parser.add_argument("--no-glow", dest="glow", action="store_false", help="leave out the Glow experiment")
    parser.add_argument("--no-sample-metrics", action="store_true", help="leave out FD-digits and KD-digits")
    parser.add_argument("--clipped-skd", type=int_list, default=None, metavar="CLIPS",
                        help="add the arm ilkd+skd-clipC to the Glow experiment: ILKD+SKD with train.grad_clip C, "
                             "C chosen among these comma-separated values by seed 0's validation bits/dim")


if __name__ == "__main__":
    main(__doc__, "Distillation of flows on digits", settings, root=Path("/tmp/nf_distill_digits"),
         teacher_steps="500,1500", steps="1000", latency_batch=64, add_arguments=add_arguments)
