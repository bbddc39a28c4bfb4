"""``nf sample``: draw samples from a trained flow and save them as an image grid (or a ``.npy`` array).

``nf sample CHECKPOINT -n N [--temperature T] [--class C] --out FILE.png [--set key=value ...]``. ``CHECKPOINT`` is a
checkpoint file or a run folder. ``--set`` options go to the flow's ``sample`` method as keyword arguments: ``denoise``
and the sampling options of its layers (e.g. ``--set guidance=2.0`` for TarFlow's classifier-free guidance).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch

from nfkit_core.checkpoint import build_flow, checkpoint_path, data_info_from_dict, read_checkpoint
from nfkit_core.cli.settings import parse_assignment
from nfkit_core.data import Preprocessing
from nfkit_core.errors import ConfigError
from nfkit_core.files import explain_full_disk
from nfkit_core.sampling import grid_columns, sample_labels
from nfkit_core.specs import CommandSpec
from nfkit_core.train.distributed import resolve_device
from nfkit_core.train.plots import save_samples

SUFFIXES = (".png", ".npy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint file, or a run folder")
    parser.add_argument("-n", "--num-samples", type=int, default=64, metavar="N", help="number of samples")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="scale of the latent draws (below 1: smoother, less varied samples)")
    parser.add_argument("--class", dest="class_label", type=int, metavar="C",
                        help="class label of every sample (class-conditional flows; default: cycle through the "
                             "classes)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="where to write: .png (image grid, or scatter plot of vector samples) or .npy (array)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="a keyword argument of the architecture's sample() method, e.g. guidance=2.0")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent draws")
    parser.add_argument("--weights", choices=("auto", "ema", "model"), default="auto",
                        help="moving-average or trained weights (auto: the average when the checkpoint has one)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--nrow", type=int, metavar="K", help="images per row of the grid")


def _sample_options(flow: torch.nn.Module, assignments: list[str]) -> dict:
    options = dict(parse_assignment(assignment) for assignment in assignments)
    refused = sorted(set(options) - flow.sampling_options())
    if refused:
        raise ConfigError(f"{type(flow).__name__}.sample() takes no option(s) {refused} through --set; its extra "
                          f"options: {', '.join(sorted(flow.sampling_options()))}")
    return options


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in SUFFIXES:
        raise ConfigError(f"--out must end in {' or '.join(SUFFIXES)}, got {out.name!r}")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the file to write, e.g. {out / ('samples' + out.suffix)}")
    folder = next((p for p in (out.parent, *out.parent.parents) if p.exists()), Path("."))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {folder} (permission denied); choose another --out")
    if args.num_samples < 1:
        raise ConfigError(f"-n must be at least 1, got {args.num_samples}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise ConfigError(f"--temperature must be a positive number, got {args.temperature}")
    if args.nrow is not None and args.nrow < 1:
        raise ConfigError(f"--nrow must be at least 1, got {args.nrow}")
    device = resolve_device(args.device)
    state = read_checkpoint(args.checkpoint, map_location=device)
    flow = build_flow(state, ema={"auto": None, "ema": True, "model": False}[args.weights]).to(device)
    info = data_info_from_dict(state["data_info"])
    options = _sample_options(flow, args.set)
    n = args.num_samples
    if args.class_label is not None:
        if info.num_classes == 0:
            raise ConfigError("--class needs a class-conditional flow; this one was trained without "
                              "train.class_conditional=true")
        if not 0 <= args.class_label < info.num_classes:
            raise ConfigError(f"--class must lie in 0..{info.num_classes - 1}, got {args.class_label}")
    context = sample_labels(n, info.num_classes, args.class_label, device=device)
    generator = torch.Generator().manual_seed(args.seed)
    samples = flow.sample(n, context, temperature=args.temperature, generator=generator, **options)
    with explain_full_disk(out, samples.numel() * 4):
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".npy":
            np.save(out, samples.float().cpu().numpy())
        else:
            nrow = args.nrow or grid_columns(info.num_classes, args.class_label)
            save_samples(samples, Preprocessing(**state["preprocessing"]), out, nrow=nrow)
    print(f"wrote {n} samples of {checkpoint_path(args.checkpoint)} (step {state['step']}) to {out}")
    return 0


COMMAND = CommandSpec("sample", "Draw samples from a trained flow and save them as an image grid or array.",
                      add_arguments, run)
