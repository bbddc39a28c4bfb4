"""Knowledge distillation of a multi-scale Glow on 8x8 digits (Walton et al., "Distilling Normalizing Flows").

Teacher: Glow, 2 levels of K=8 steps, hidden 64, trained by likelihood. Student: Glow, 2 levels of K=2 steps, hidden
32. Arms (same steps, optimizer, schedule, seeds): likelihood only, LKD, ILKD, ILKD+SKD warm-started from ILKD
(see ``distill_experiment.py``), with the paper's weights: ILKD (0.9, 0.1), ILKD+SKD (0.85, 0.075, 0.075), NLL in
bits/dim. Reports test bits/dim (mean +- standard error over seeds), the share of the teacher-student gap closed, the
paired wins over the likelihood-only student, parameters and the latency of sampling one batch of 64. ``--tarflow``
adds the experiment beyond the paper: a TarFlow student with half the blocks of a TarFlow teacher, matched per block.

    python benchmarks/distill_digits.py --output benchmarks/results/distill_digits.md
"""

from __future__ import annotations

import json
from pathlib import Path

from common import Stamp, make_parser, parse_args, write_report
from distill_experiment import ARMS, sampling_latency, table, train_student, train_teacher

GLOW_TEACHER = {"num_levels": 2, "steps_per_level": 8, "hidden_channels": 64}
GLOW_STUDENT = {"num_levels": 2, "steps_per_level": 2, "hidden_channels": 32}
TARFLOW_TEACHER = {"patch_size": 2, "channels": 64, "num_blocks": 4, "layers_per_block": 2, "noise_std": 0.05}
TARFLOW_STUDENT = {**TARFLOW_TEACHER, "num_blocks": 2}
OPTIONS = {"ilkd": {}, "lkd": {}, "ilkd+skd": {}}


def experiment(root: Path, arch: str, teacher_model: dict, student_model: dict, teacher_steps: int, steps: int,
               seeds: list[int], arms: tuple[str, ...]) -> str:
    common = {"batch_size": 64, "lr": 1e-3, "warmup_steps": 50, "progress": False, "val_every": 10**6,
              "sample_every": 10**6, "log_every": 50, "precision": "fp32", "ema_decay": None}
    teacher_dir = root / f"{arch}-teacher"
    teacher = train_teacher(teacher_dir, arch, "digits", teacher_model, {},
                            {**common, "steps": teacher_steps, "seed": 1000, "checkpoint_every": teacher_steps})
    results: dict[str, list[float]] = {arm: [] for arm in arms}
    reports = {}
    for seed in seeds:
        for arm in arms:
            out = root / f"{arch}-{arm}-seed{seed}"
            report = train_student(out, arm, teacher_dir, arch, "digits", student_model, {},
                                   {**common, "steps": steps, "seed": seed, "checkpoint_every": steps}, OPTIONS)
            results[arm].append(report["test_bpd"])
            reports[(arm, seed)] = report
            print(f"{arch} {arm} seed {seed}: test bpd {report['test_bpd']:.4f}", flush=True)
    student_dir = root / f"{arch}-{arms[0]}-seed{seeds[0]}"
    latency = sampling_latency({"teacher": teacher_dir, "student": student_dir}, batch=64)
    params = {"teacher": teacher["parameters"], "student": reports[(arms[0], seeds[0])]["parameters"]}
    nll_val = [reports[("nll", s)]["val_bpd"] for s in seeds]
    text = table(results, teacher["test_bpd"], "bits/dim", False, params, latency)
    margin = sum(results["nll"]) / len(seeds) - teacher["test_bpd"]
    text += (f"\nTeacher: test {teacher['test_bpd']:.4f}, validation {teacher['val_bpd']:.4f}, train (last log "
             f"interval) {teacher['train_bpd']:.4f} bits/dim after {teacher_steps} steps; held-out margin over the "
             f"likelihood-only student: {margin:.4f} bits/dim on test, "
             f"{sum(nll_val) / len(seeds) - teacher['val_bpd']:.4f} on validation.\n")
    (root / f"{arch}-results.json").write_text(json.dumps({"results": results, "teacher": teacher}, indent=2))
    return text


def main() -> None:
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/nf_distill_digits"), help="folder for the runs")
    parser.add_argument("--teacher-steps", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps of every student")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only-seed", type=int, default=None,
                        help="train only this seed's runs (processes for different seeds can share --root); a run "
                             "without it over the finished runs writes the table")
    parser.add_argument("--tarflow", action="store_true", help="also run the TarFlow student experiment")
    args = parse_args(parser)
    seeds = list(range(args.seeds)) if args.only_seed is None else [args.only_seed]
    stamp = Stamp("Distillation of Glow on digits", args,
                  timing="sampling latency: best of 5 alternating rounds of sampling 64 images per model")
    sections = [stamp.render(),
                f"Students: {args.steps} steps each, batch 64, AdamW lr 1e-3 (50 warm-up steps, cosine), fp32, "
                f"seeds {seeds}; one teacher (seed 1000). Latency: best of 5 alternating rounds of sampling 64 "
                f"images, on a shared machine.", "",
                experiment(args.root, "glow", GLOW_TEACHER, GLOW_STUDENT, args.teacher_steps, args.steps, seeds, ARMS)]
    if args.tarflow:
        sections += ["", "## TarFlow student (beyond the paper): half the blocks, matched per block", "",
                     experiment(args.root, "tarflow", TARFLOW_TEACHER, TARFLOW_STUDENT, args.teacher_steps,
                                args.steps, seeds, ("nll", "ilkd"))]
    write_report(args.output, "\n".join(sections))


if __name__ == "__main__":
    main()
