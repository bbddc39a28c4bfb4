"""Knowledge distillation of tabular flows on scikit-learn's breast-cancer data (30 features, 569 examples).

The paper's Table 3 setting: a MAF teacher of K=6 MADE blocks (hidden 32) and a MAF student of K=3 (hidden 32), and
a coupling flow (nf's Real NVP for vectors: affine couplings and ActNorm, the layers of the paper's tabular Glow
without the 1x1 mixing) with 12 coupling layers of hidden 64 against 4 of hidden 32. The data is split 60/20/20 by a
fixed shuffle and standardized with the training split's mean and standard deviation. Arms and statistics as in
``distill_experiment.py``; the NLL is in nats summed over the features (the authors' tabular unit) with their
tabular weights: LKD/ILKD (0.9, 0.1), ILKD+SKD (0.85, 0.05, 0.10). Reports the test log-likelihood in nats per
example (higher is better).

    python benchmarks/distill_tabular.py --output benchmarks/results/distill_tabular.md
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from common import Stamp, make_parser, parse_args, write_report
from distill_experiment import ARMS, sampling_latency, table, train_student, train_teacher

MODELS = {
    "maf": ({"num_layers": 6, "hidden_features": 32, "hidden_layers": 2},
            {"num_layers": 3, "hidden_features": 32, "hidden_layers": 2}),
    "realnvp": ({"couplings": 6, "hidden": 64}, {"couplings": 2, "hidden": 32}),
}
NATS = {"nll_unit": "nats"}
OPTIONS = {"lkd": NATS, "ilkd": NATS,
           "ilkd+skd": {**NATS, "nll_weight": 0.85, "latent_weight": 0.05, "sample_weight": 0.10}}


def write_data(root: Path) -> Path:
    """The breast-cancer data as ``{train,val,test}.npy``, standardized with training statistics."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data.astype(np.float64)
    order = np.random.default_rng(0).permutation(len(data))
    n_train, n_val = int(0.6 * len(data)), int(0.2 * len(data))
    parts = {"train": data[order[:n_train]], "val": data[order[n_train:n_train + n_val]],
             "test": data[order[n_train + n_val:]]}
    mean, std = parts["train"].mean(axis=0), parts["train"].std(axis=0)
    folder = root / "breast_cancer"
    if all((folder / f"{name}.npy").is_file() for name in parts):  # a rerun over finished runs reads the same data
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in parts.items():
        np.save(folder / f"{name}.npy", ((values - mean) / std).astype(np.float32))
    return folder


def nats(report: dict, split: str, dims: int) -> float:
    """Test (or validation) log-likelihood in nats per example from a report's bits/dim."""
    return -report[f"{split}_bpd"] * dims * math.log(2.0)


def experiment(root: Path, data: dict, arch: str, teacher_steps: int, steps: int, seeds: list[int]) -> str:
    dims = 30
    teacher_model, student_model = MODELS[arch]
    common = {"batch_size": 64, "lr": 1e-3, "warmup_steps": 50, "progress": False, "val_every": 10**6,
              "sample_every": 10**6, "log_every": 50, "precision": "fp32", "eval_samples": 1}
    teacher_dir = root / f"{arch}-teacher"
    teacher = train_teacher(teacher_dir, arch, "tabular", teacher_model, data,
                            {**common, "steps": teacher_steps, "seed": 1000, "checkpoint_every": teacher_steps})
    results: dict[str, list[float]] = {arm: [] for arm in ARMS}
    val_nll = []
    student = None
    for seed in seeds:
        for arm in ARMS:
            report = train_student(root / f"{arch}-{arm}-seed{seed}", arm, teacher_dir, arch, "tabular",
                                   student_model, data, {**common, "steps": steps, "seed": seed,
                                                         "checkpoint_every": steps}, OPTIONS)
            results[arm].append(nats(report, "test", dims))
            if arm == "nll":
                val_nll.append(nats(report, "val", dims))
            student = student or report
            print(f"{arch} {arm} seed {seed}: test log-likelihood {results[arm][-1]:.3f} nats", flush=True)
    latency = sampling_latency({"teacher": teacher_dir, "student": root / f"{arch}-nll-seed{seeds[0]}"}, batch=64)
    params = {"teacher": teacher["parameters"], "student": student["parameters"]}
    teacher_test = nats(teacher, "test", dims)
    text = table(results, teacher_test, "log-likelihood (nats)", True, params, latency)
    text += (f"\nTeacher: test {teacher_test:.3f}, validation {nats(teacher, 'val', dims):.3f} nats after "
             f"{teacher_steps} steps; held-out margin over the likelihood-only student: "
             f"{teacher_test - sum(results['nll']) / len(seeds):.3f} nats on test, "
             f"{nats(teacher, 'val', dims) - sum(val_nll) / len(seeds):.3f} on validation.\n")
    (root / f"{arch}-results.json").write_text(json.dumps({"results": results, "teacher": teacher}, indent=2))
    return text


def main() -> None:
    parser = make_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/nf_distill_tabular"), help="folder for the runs")
    parser.add_argument("--teacher-steps", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps of every student")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--archs", default="maf,realnvp")
    parser.add_argument("--only-seed", type=int, default=None,
                        help="train only this seed's runs (processes for different seeds can share --root); a run "
                             "without it over the finished runs writes the table")
    args = parse_args(parser)
    seeds = list(range(args.seeds)) if args.only_seed is None else [args.only_seed]
    data = {"root": str(write_data(args.root))}
    stamp = Stamp("Distillation of tabular flows on breast cancer", args,
                  timing="sampling latency: best of 5 alternating rounds of sampling 64 examples per model")
    sections = [stamp.render(),
                f"Students: {args.steps} steps each, batch 64, AdamW lr 1e-3 (50 warm-up steps, cosine), fp32, seeds "
                f"{seeds}; one teacher per architecture (seed 1000, {args.teacher_steps} steps). Latency: best of 5 "
                f"alternating rounds of sampling 64 examples, on a shared machine."]
    for arch in args.archs.split(","):
        sections += ["", f"## {arch}", "", experiment(args.root, data, arch, args.teacher_steps, args.steps, seeds)]
    write_report(args.output, "\n".join(sections))


if __name__ == "__main__":
    main()
