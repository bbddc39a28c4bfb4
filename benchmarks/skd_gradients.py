"""The SKD term's gradient at a student's state: how often it is non-finite, and how large it is otherwise.

For every student run folder and sample temperature, ``--batches`` SKD batches are drawn (the latents of
``DistillationObjective.sample_loss``, batch ``i`` from seed ``i``; no data is read) and the SKD term alone is
back-propagated through the student in training mode. The report gives, per student and temperature, the number of
batches whose gradient norm is non-finite and the median and largest of the finite norms. ``distill_digits.py``'s
ILKD+SKD runs switch SKD on at step 500; the checkpoints its diverged runs kept are those warm starts:

    python benchmarks/skd_gradients.py --teacher /tmp/nfd/digits/glow-teacher-500steps --students \\
        /tmp/nfd/digits/glow-ilkd+skd-1000steps-seed1 /tmp/nfd/digits/glow-ilkd+skd-1000steps-seed2 \\
        /tmp/nfd/digits/glow-ilkd+skd-1000steps-seed3 /tmp/nfd/digits/glow-ilkd+skd-1000steps-seed4
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import torch
from common import Stamp, make_parser, parse_args, write_report

from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.data import DataInfo
from nfkit_core.plugins import get_registry
from nfkit_distill.distillers import ILKDSKDConfig, build_objective


def gradient_norms(teacher: torch.nn.Module, student: torch.nn.Module, temperature: float, batches: int,
                   batch_size: int) -> list[float]:
    """The norm of the SKD term's gradient over the student's parameters for each of ``batches`` batches."""
    config = ILKDSKDConfig(nll_unit="bpd", sample_temperature=temperature)
    objective = build_objective(config, teacher, student, torch.zeros(2, *teacher.data_shape))  # pairs checked on it
    student.train()
    norms = []
    for i in range(batches):
        torch.manual_seed(i)
        student.zero_grad(set_to_none=True)
        objective.sample_loss(batch_size, None, torch.device("cpu")).backward()
        grads = [p.grad for p in student.parameters() if p.grad is not None]
        norms.append(torch.nn.utils.get_total_norm(grads).item() if grads else 0.0)
    return norms


def row(name: str, temperature: float, norms: list[float]) -> str:
    finite = [n for n in norms if math.isfinite(n)]
    median, largest = (f"{statistics.median(finite):.3g}", f"{max(finite):.3g}") if finite else ("", "")
    return f"| {name} | {temperature:g} | {len(norms) - len(finite)}/{len(norms)} | {median} | {largest} |"


def tiny_flow(steps_per_level: int) -> torch.nn.Module:
    spec = get_registry().architectures.get("glow")
    config = spec.make_config("digits-tiny", steps_per_level=steps_per_level)
    return spec.build(config, DataInfo(shape=(1, 8, 8), num_bins=17))


def main() -> None:
    parser = make_parser(__doc__.split("\n\n")[0], memory=False, processes=False)
    parser.add_argument("--teacher", type=Path, help="the teacher's run folder")
    parser.add_argument("--students", type=Path, nargs="+", default=[], help="the students' run folders")
    parser.add_argument("--temperatures", default="0.7,0.5,0.3",
                        help="comma-separated sample temperatures of the factored-out latents (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=30, help="SKD batches per student and temperature "
                                                                "(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="latents per batch (default: %(default)s)")
    args = parse_args(parser)
    temperatures = [float(t) for t in args.temperatures.split(",")]
    if args.tiny:
        teacher, students, args.batches = tiny_flow(2), {"tiny": tiny_flow(1)}, 2
    else:
        if args.teacher is None or not args.students:
            parser.error("--teacher and --students are needed (or --tiny)")
        teacher = load_checkpoint(args.teacher)
        students = {path.name: load_checkpoint(path) for path in args.students}
    stamp = Stamp("The SKD term's gradient at the students' checkpoints", args,
                  timing="none (no timing: gradient norms only)")
    lines = ["| student | temperature | non-finite gradients | median finite norm | largest finite norm |",
             "|---|---|---|---|---|"]
    for name, student in students.items():
        for temperature in temperatures:
            lines.append(row(name, temperature, gradient_norms(teacher, student, temperature, args.batches,
                                                               args.batch_size)))
    teacher_note = "a tiny untrained Glow" if args.tiny else str(args.teacher)
    text = (f"Teacher: {teacher_note}. {args.batches} SKD batches of {args.batch_size} latents per student and "
            f"temperature; the norm is that of the SKD term's gradient alone, unweighted (ILKD+SKD weighs it "
            f"0.075).\n\n"
            + "\n".join(lines) + "\n")
    write_report(args.output, stamp.render() + "\n" + text)


if __name__ == "__main__":
    main()
