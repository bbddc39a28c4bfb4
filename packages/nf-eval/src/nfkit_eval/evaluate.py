"""One evaluation of a flow: run the chosen metrics on a shared :class:`EvalContext`, collect a :class:`Report`, and
write it (with its figures) only when every metric has finished, so that an evaluation is either complete or absent.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nfkit_core.checkpoint import build_flow, checkpoint_path, data_info_from_dict, read_checkpoint
from nfkit_core.data import Preprocessing
from nfkit_core.errors import ConfigError
from nfkit_core.plugins import MetricSpec, Registry, get_registry
from nfkit_eval.context import EvalContext, EvalOptions
from nfkit_eval.data import EvalData
from nfkit_eval.metric import applies_to
from nfkit_eval.report import Report

__all__ = ["evaluate", "evaluate_run", "load_run", "resolve_metrics", "default_metrics", "versions"]


def default_metrics(data: EvalData, registry: Registry | None = None) -> list[str]:
    """The registered metrics that are part of the default set for this data."""
    registry = registry or get_registry()
    return [m.name for m in registry.metrics if m.default and applies_to(m, data)]


def resolve_metrics(names: Sequence[str] | None, data: EvalData, registry: Registry | None = None
                    ) -> list[MetricSpec]:
    """The metrics called ``names`` (the default set when ``None``); clear errors for unknown or inapplicable ones."""
    registry = registry or get_registry()
    names = list(names) if names is not None else default_metrics(data, registry)
    metrics = [registry.metrics.get(name) for name in names]
    for metric in metrics:
        if not applies_to(metric, data):
            kind = "images" if data.is_image else "vector data"
            raise ConfigError(f"metric {metric.name!r} applies to {metric.data}, dataset {data.name!r} is {kind}; "
                             f"leave it out of --metrics")
    return metrics


def versions(flow: nn.Module | None = None) -> dict[str, str]:
    """Versions of the software that produced the numbers."""
    found = {"torch": str(torch.__version__)}
    for distribution in ("nfkit-eval", "nfkit-core", "torch-fidelity", "scipy", "scikit-learn"):
        try:
            found[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            pass
    return found


def evaluate(flow: nn.Module, data: EvalData, metrics: Sequence[str] | None = None,
             options: EvalOptions | None = None, *, out_dir: str | Path | None = None,
             cache_dir: str | Path | None = None, subject: str = "flow", header: dict[str, Any] | None = None,
             registry: Registry | None = None) -> Report:
    """Evaluate ``flow`` on ``data`` with the named metrics (the default set for the data when ``None``).

    Args:
        flow: an nf flow (in eval mode after this call).
        data: the held-out and training splits and the preprocessing (:meth:`EvalData.load`).
        metrics: registered metric names, e.g. ``["bpd", "iwbo", "fid"]``.
        options: the protocol's options (:class:`EvalOptions`).
        out_dir: write ``eval.json``, ``eval.md`` and the figures there (nothing is written when ``None``).
        cache_dir: where dataset classifiers are cached (not cached when ``None``).
        subject: the name of what is evaluated, for the report.
        header: extra facts for the report's header (architecture, step, ...).
        registry: where metrics are looked up (the process-wide registry by default).
    """
    options = options or EvalOptions()
    metric_list = resolve_metrics(metrics, data, registry)
    flow = flow.to(options.device).eval()
    out_dir = Path(out_dir) if out_dir is not None else None
    staging = out_dir.parent / f".{out_dir.name}.{os.getpid()}.partial" if out_dir is not None else None
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    context = EvalContext(flow, data, options, Path(cache_dir) if cache_dir else None, staging)
    report = Report(subject, {**(header or {}), "dataset": data.name, "split": data.split,
                              "metrics_run": [m.name for m in metric_list], "versions": versions(),
                              "options": options.to_dict()})
    try:
        seconds = report.header.setdefault("seconds", {})
        for metric in metric_list:
            started = time.perf_counter()
            report.measurements += metric.compute(context)
            seconds[metric.name] = round(time.perf_counter() - started, 2)
        if staging is not None:
            report.figures = {name: str(out_dir / Path(path).name) for name, path in context.figures.items()}
            report.write(staging)
            out_dir.mkdir(parents=True, exist_ok=True)
            for item in staging.iterdir():
                os.replace(item, out_dir / item.name)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return report


def load_run(path: str | Path, split: str = "test", data_overrides: dict[str, Any] | None = None,
             weights: str = "auto", device: str = "cpu", registry: Registry | None = None
             ) -> tuple[nn.Module, EvalData, dict[str, Any]]:
    """The flow of a run folder or checkpoint, the data it was trained on, and facts for the report's header.

    Args:
        path: a run folder or a checkpoint file.
        split: the held-out split to evaluate on.
        data_overrides: dataset options to change (e.g. ``{"root": "/data/cifar10"}`` when the data moved).
        weights: ``auto`` (the moving average when the checkpoint has one), ``ema`` or ``model``.
        device: where the flow goes.
    """
    from nfkit_core.train.config import coerce_options

    registry = registry or get_registry()
    state = read_checkpoint(path, map_location=device)
    flow = build_flow(state, registry=registry, ema={"auto": None, "ema": True, "model": False}[weights])
    data_spec = registry.datasets.get(state["dataset"])
    config = data_spec.config_class(**{**state["data_config"],
                                       **coerce_options(data_spec.config_class, data_overrides or {}, "data")})
    data = EvalData.load(state["dataset"], config, Preprocessing(**state["preprocessing"]),
                         data_info_from_dict(state["data_info"]), split, registry)
    header = {"architecture": state["architecture"], "preset": state.get("preset"), "step": int(state["step"]),
              "checkpoint": str(checkpoint_path(path)),
              "weights": "ema" if (weights == "ema" or (weights == "auto" and state.get("ema") is not None))
              else "model", "trained_with": state.get("versions")}
    return flow.to(device), data, header


def evaluate_run(path: str | Path, metrics: Sequence[str] | None = None, options: EvalOptions | None = None, *,
                 split: str = "test", out_dir: str | Path | None = None, data_overrides: dict[str, Any] | None = None,
                 weights: str = "auto", registry: Registry | None = None) -> Report:
    """:func:`evaluate` the flow of a run folder or checkpoint on its own data; writes into ``out_dir`` (default:
    ``RUN/eval``) and caches dataset classifiers in ``RUN/eval_cache``."""
    options = options or EvalOptions()
    flow, data, header = load_run(path, split, data_overrides, weights, options.device, registry)
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    return evaluate(flow, data, metrics, options, out_dir=out_dir or run_dir / "eval",
                    cache_dir=run_dir / "eval_cache", subject=str(path), header=header, registry=registry)
