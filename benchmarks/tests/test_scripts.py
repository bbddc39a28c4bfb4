"""Every benchmark script runs in its ``--tiny`` mode (seconds), so that none of them can rot unnoticed.

Each test runs the script as its README shows, in a fresh interpreter, and checks the report it writes: the stamp
(commit, CPU, threads, date, method) and a table whose figures are medians inside their own ranges.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import common
import pytest
import torch

SPREAD = re.compile(r"^([\d,.e+-]+)x? \(([\d,.e+-]+)-([\d,.e+-]+)x?\)$")
RUN_TIMEOUT = 1800  # seconds a script's tiny run may take


def run(script: str, tmp_path: Path, *args: str) -> str:
    """Run ``benchmarks/<script>`` with ``--tiny`` and ``args``; the report it wrote to ``--output``."""
    output = tmp_path / "report.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, str(common.ROOT / "benchmarks" / script), "--tiny", "--output",
                                str(output), *args], cwd=common.ROOT, env=env, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "terminate called" not in completed.stderr, completed.stderr[-3000:]  # no process of the run aborted
    report = output.read_text()
    assert report.strip() in completed.stdout  # printed too
    return report


def check_stamp(report: str, title: str, threads: str) -> None:
    assert report.startswith(f"# {title}\n")
    assert f"commit {common.commit()}" in report
    assert common.cpu_description() in report and f"torch threads: {threads}" in report
    # The stamp gives the day the run started, which may be the day before a run that crossed midnight.
    days = {time.strftime("%Y-%m-%d", time.gmtime(time.time() - seconds)) for seconds in (0, RUN_TIMEOUT)}
    assert any(day in report for day in days), days
    assert "3 alternating rounds" in report and "--tiny smoke run: these figures mean nothing" in report


def table_rows(report: str) -> list[list[str]]:
    """The cells of every row of the report's first table, without its header and rule."""
    lines = list(itertools.takewhile(lambda line: line.startswith("|"),
                                     itertools.dropwhile(lambda line: not line.startswith("|"), report.splitlines())))
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [row for row in rows[2:] if not set("".join(row)) <= set("-")]


def spread(cell: str) -> tuple[float, float, float]:
    """``median (low-high)`` as numbers, checking that the median lies in its range."""
    match = SPREAD.match(cell)
    assert match, cell
    median, low, high = (float(group.replace(",", "")) for group in match.groups())
    assert 0 < low <= median <= high, cell
    return median, low, high


def test_glow_maf(tmp_path):
    pytest.importorskip("zuko", reason="pip install -r benchmarks/requirements.txt")
    pytest.importorskip("normflows", reason="pip install -r benchmarks/requirements.txt")
    report = run("glow_maf.py", tmp_path)
    check_stamp(report, "Glow and MAF: nf against normflows and zuko", "1")
    rows = table_rows(report)
    assert [(row[0], row[2]) for row in rows] == [("MAF", "nf"), ("MAF", "zuko"), ("MAF", "nf (+BN)"),
                                                 ("Glow", "nf"), ("Glow", "normflows")]
    for row in rows:
        spread(row[5]), spread(row[6])  # train steps/s, samples/s
        assert float(row[7]) >= 0 and float(row[8]) >= 0  # peak MiB
        if row[2] in ("zuko", "normflows"):
            assert row[9] == "baseline"
        else:
            train, sample = row[9].split(" / ")
            spread(train), spread(sample)
    # Same sizes on both sides: MAF has equal parameter counts.
    assert rows[0][3] == rows[1][3]


def test_tarflow(tmp_path):
    report = run("tarflow.py", tmp_path, "--threads", "1", "--configs", "small")
    check_stamp(report, "TarFlow benchmark", "1")
    rows = table_rows(report)
    assert [(row[0], row[9]) for row in rows] == [("small", "none"), ("", "cfg 2.0")]
    for row in rows:
        for cell in (row[10], row[12], row[14], row[15]):  # KV cache, Jacobi, naive img/s, KV cache / naive
            spread(cell)
        assert row[11] == "-"  # no MFU on a CPU without --peak-tflops
        assert [1 <= int(count) <= 3 for count in row[13].split(", ")] == [True] * 2  # per block; at most T - 1
    spread(rows[0][5])  # train steps/s
    assert float(rows[0][7]) >= 0  # train memory


def official_tarflow_root() -> str:
    """The official TarFlow's folder from ``NF_OFFICIAL_TARFLOW``; the test skips without it."""
    root = os.environ.get("NF_OFFICIAL_TARFLOW")
    if not root:
        pytest.skip("set NF_OFFICIAL_TARFLOW to a folder holding apple/ml-tarflow's transformer_flow.py "
                    "(see benchmarks/tarflow.py)")
    return root


TARFLOW_TINY_FIXTURES = common.ROOT / "packages" / "nf-arch-tarflow" / "tests" / "fixtures"


def test_tarflow_against_the_official_code(tmp_path):
    report = run("tarflow.py", tmp_path, "--threads", "1", "--official-root", official_tarflow_root(), "--fixtures",
                 str(TARFLOW_TINY_FIXTURES), "--profile")
    check_stamp(report, "TarFlow: nf against the official implementation", "1")
    for name in ("tarflow_cond_tiny.pt", "tarflow_uncond_tiny.pt"):  # the official code reproduces the fixtures
        (line,) = [line for line in report.splitlines() if line.startswith(f"- `{name}`")]
        assert all(float(value) < 1e-5 for value in re.findall(r"\d\.\de[+-]\d+", line)), line
    table, profile = report.split("## Profile")
    rows = table_rows(table)
    sampling = ["sequential", "compiled", "jacobi", "sequential bf16", "jacobi bf16"]
    training = ["fp32", "bf16", "fp32, fused AdamW", "bf16, fused AdamW"]  # each against the official step with
    assert [row[5] for row in rows] == (sampling * 2 + training) * 2    # the same optimizer
    assert [row[0] for row in rows] == ["small (1x4x4)"] * 14 + ["medium (3x4x4)"] * 14
    for row in rows:
        spread(row[4]), spread(row[6]), spread(row[7].strip("*"))  # official s, nf s, speed-up
        if row[2].startswith("sampling"):
            assert float(row[8]) < (1e-4 if "bf16" not in row[5] else 1e-1)  # the same samples as the official code
            iterations = [] if row[9] == "-" else [1 <= int(count) <= 3 for count in row[9].split(", ")]
            assert iterations == ([] if "jacobi" not in row[5] else [True] * 2)  # per block; at most T - 1
    profiled = [(row[0], row[1], row[2]) for row in table_rows(profile)]
    tasks = ["sampling, no guidance"] * 3 + ["sampling, CFG 2.0"] * 3 + ["training step"] * 2
    implementations = ["official", "nf sequential", "nf jacobi"] * 2 + ["official", "nf fp32"]
    assert profiled == [(config, task, implementation) for config in ("small", "medium")
                        for task, implementation in zip(tasks, implementations, strict=True)]


def test_tarflow_against_the_official_code_in_fp32_only(tmp_path):
    report = run("tarflow.py", tmp_path, "--threads", "1", "--official-root", official_tarflow_root(), "--fixtures",
                 str(TARFLOW_TINY_FIXTURES), "--fp32-only")
    assert "- precision: official and nf in fp32 (--fp32-only)" in report
    variants = ["sequential", "compiled", "jacobi"] * 2 + ["fp32", "fp32, fused AdamW"]  # no bf16 row
    assert [row[5] for row in table_rows(report)] == variants * 2


def test_the_tarflow_profile_counts_the_arithmetic_of_the_matrix_products():
    import tarflow
    import torch

    x, weight, bias = torch.randn(8, 16), torch.randn(32, 16), torch.randn(32)
    profile = tarflow.op_profile(lambda: torch.nn.functional.linear(x, weight, bias) @ weight, calls=2)
    # addmm of (8 x 16) by (16 x 32), then mm of (8 x 32) by (32 x 16): 8 * 16 * 32 multiply-accumulates each
    assert profile["gemm_rate"] * profile["gemm"] == pytest.approx(2 * 8 * 16 * 32)
    assert 0 < profile["gemm"] <= profile["total"]


def test_tarflow_refuses_a_missing_official_root_or_fixtures(tmp_path):
    def refusal(*args: str) -> str:
        completed = subprocess.run([sys.executable, str(common.ROOT / "benchmarks" / "tarflow.py"), "--tiny",
                                    *args], cwd=common.ROOT, capture_output=True, text=True, timeout=1800)
        assert completed.returncode == 2  # a usage error, before anything is measured
        return completed.stderr.splitlines()[-1]

    (tmp_path / "transformer_flow.py").write_text("")
    assert f"--official-root {tmp_path / 'absent'}: transformer_flow.py not found" in refusal(
        "--official-root", str(tmp_path / "absent"))
    assert f"--fixtures {tmp_path}: no tarflow_*.pt" in refusal("--official-root", str(tmp_path), "--fixtures",
                                                                 str(tmp_path))
    assert "--official-root compares the configurations small, medium only" in refusal(
        "--official-root", str(tmp_path), "--configs", "imagenet64")


def test_denseflow(tmp_path):
    report = run("denseflow.py", tmp_path, "--configs", "small")
    check_stamp(report, "DenseFlow benchmark", "1")
    (row,) = table_rows(report)
    assert row[0] == "small (digits-tiny)"
    for cell in (row[4], row[7], row[10]):  # train steps/s, sampling img/s, eval s/image
        spread(cell)
    assert float(row[5]) >= 0
    assert row[11:13] == ["-", "-"]  # no MFU on a CPU without --peak-tflops


def test_denseflow_reports_mfu_against_a_given_peak(tmp_path):
    report = run("denseflow.py", tmp_path, "--configs", "small", "--peak-tflops", "1")
    (row,) = table_rows(report)
    assert [0 < float(cell.rstrip("%")) for cell in row[11:13]] == [True, True]  # train, sampling MFU


def official_denseflow() -> tuple[str, str]:
    """The official DenseFlow's folder (``NF_OFFICIAL_DENSEFLOW``) and the reference fixture its 'small' comparison
    runs on; the test skips without either."""
    root = os.environ.get("NF_OFFICIAL_DENSEFLOW")
    if not root:
        pytest.skip("set NF_OFFICIAL_DENSEFLOW to a folder with the official DenseFlow and survae_flows checkouts "
                    "(see benchmarks/denseflow.py)")
    from nfkit_core.testing import reference_fixture_dir

    fixture = reference_fixture_dir() / "denseflow_small.pt"
    if not fixture.is_file():
        pytest.skip(f"reference fixture {fixture} missing")
    return root, str(fixture)


def check_denseflow_comparison(report: str, variants: list[str]) -> None:
    """The official code reproduces the fixture, and every variant's row of both configurations has its figures."""
    check_stamp(report, "DenseFlow: nf against the official implementation", "1")
    reproduced = re.search(r"`denseflow_small.pt`: `log_prob` of its 4 images (\S+) nats .*, `sample\(3\)` (\d+) of",
                           report)
    assert float(reproduced[1]) < 1e-2 and reproduced[2] == "0"  # float rounding of another CPU; identical images
    rows = [row for row in table_rows(report) if not row[3].startswith("batches: ")]  # a config's own row
    assert [row[3] for row in rows if row[3]] == variants * 2
    for row in rows:
        if row[3] in ("official", "nf fp32", "nf bf16"):
            spread(row[5]), spread(row[9]), spread(row[11])
            assert row[7] == "baseline" if row[3] == "official" else spread(row[7])
        elif row[3]:
            spread(row[5]), spread(row[8])  # fused: train speed and the optimizer's gain


def test_denseflow_against_the_official_code(tmp_path):
    root, fixture = official_denseflow()
    report = run("denseflow.py", tmp_path, "--official-root", root, "--fixture", fixture)
    check_denseflow_comparison(
        report, ["official", "nf fp32", "nf bf16", "official, fused AdamW", "nf fp32, fused AdamW"])
    assert "| config | weights | largest bits/dim change under bf16 autocast: nf | official |" in report


def test_denseflow_against_the_official_code_in_fp32_only(tmp_path):
    root, fixture = official_denseflow()
    report = run("denseflow.py", tmp_path, "--official-root", root, "--fixture", fixture, "--fp32-only")
    assert "- precision: official and nf in fp32 (--fp32-only)" in report
    check_denseflow_comparison(report, ["official", "nf fp32", "official, fused AdamW", "nf fp32, fused AdamW"])
    assert "bf16" not in report.split("- precision:")[1]


def test_denseflow_refuses_a_missing_fixture_or_official_root(tmp_path):
    def refusal(*args: str) -> str:
        completed = subprocess.run([sys.executable, str(common.ROOT / "benchmarks" / "denseflow.py"), "--tiny",
                                    "--official-root", str(tmp_path), *args], cwd=common.ROOT, capture_output=True,
                                   text=True, timeout=1800)
        assert completed.returncode == 2  # a usage error, before anything is measured
        return completed.stderr.splitlines()[-1]

    assert f"--fixture {tmp_path / 'absent.pt'}: not found" in refusal("--fixture", str(tmp_path / "absent.pt"))
    assert f"--official-root {tmp_path}: " in refusal("--configs", "cifar")


def test_train_throughput(tmp_path):
    report = run("train_throughput.py", tmp_path, "--arch", "tiny", "--data", "toy2d", "--batch-size", "16",
                 "--threads", "1", "2")
    check_stamp(report, "Training throughput of nf train", "per row")
    rows = table_rows(report)
    assert [row[3] for row in rows] == ["1", "2"]
    for row in rows:
        samples_per_s = spread(row[6])
        assert float(row[7]) == pytest.approx(1000 * 16 / samples_per_s[0], rel=0.2)  # ms/step from the median
        assert float(row[9]) > 100  # the whole process, PyTorch included
    assert rows[0][8] == "baseline"
    spread(rows[1][8])


DATA_PATHS = ["in memory", "memory-mapped, warm", "memory-mapped, cold", "streamed, warm", "streamed, cold"]


def test_data(tmp_path):
    report = run("data.py", tmp_path, "--images", "600", "--batch-size", "64", "--batches", "2", "--workers", "0", "1",
                 "--sizes", "32")
    check_stamp(report, "Loader throughput", "1")
    assert "2 timed batches of 64 images" in report
    assert f"loader workers started by {multiprocessing.get_start_method()} (the platform's default)" in report
    loader = table_rows(report)[:10]  # the loader's table; the H100 ceilings follow
    assert [(row[1], row[2]) for row in loader] == [(workers, path) for workers in ("0", "1") for path in DATA_PATHS]
    for row in loader:
        spread(row[3])  # images/s: a median inside its range
        if row[2] == "in memory":
            assert row[4] == "baseline"
        else:
            spread(row[4])  # the speed-up over the in-memory array, with the range of its per-round ratios


def test_data_spawns_workers_on_request(tmp_path):
    """Spawned workers are new interpreters, which end by finalizing themselves: none may abort (``run`` checks)."""
    report = run("data.py", tmp_path, "--images", "600", "--batch-size", "64", "--batches", "2", "--workers", "1",
                 "--sizes", "32", "--start-method", "spawn")
    assert "- loader workers started by spawn\n" in report
    assert [row[2] for row in table_rows(report)[:5]] == DATA_PATHS


def test_data_refuses_the_thread_clock(tmp_path):
    completed = subprocess.run([sys.executable, str(common.ROOT / "benchmarks" / "data.py"), "--tiny", "--clock",
                                "thread"], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2 and "would miss the loader workers' time" in completed.stderr


def test_eval_digits(tmp_path):
    report = run("eval_digits.py", tmp_path, "--runs", str(tmp_path / "runs"), "--steps", "5", "-K", "2",
                 "--archs", "glow,maf", "--speed-batch", "16")
    check_stamp(report, "Architectures on digits, one protocol", "1")
    assert "glow: trained here" in report and "maf: trained here" in report
    speed = [line for line in report.split("Speed and size (batch 16;")[1].splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in speed[2:]]
    assert [row[0] for row in rows] == ["glow", "maf"]
    for row in rows:
        assert int(row[1].replace(",", "")) > 1000  # parameters
        spread(row[2]), spread(row[3])  # samples/s and examples/s: medians inside their ranges
        assert float(row[4]) >= 0  # peak RSS rise of a sampling call



def check_distillation_table(report: str, section: str, arms: list[str]) -> None:
    """A section's table: the teacher, then every arm with a mean +- s.e. (and how many seeds finished, if not all),
    the nll row first and without wins; then the table of every run's score, a row per seed."""
    text = report.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    summary, runs = text.split("\n| arm |", 1)[1].split("\n| seed |", 1)
    rows = table_rows("| arm |" + summary.split("\n\n", 1)[0])
    assert [row[0] for row in rows] == ["teacher", *arms]
    assert rows[0][2] == "100%" and rows[1][2] == "0%" and rows[1][4] == ""
    for row in rows[1:]:
        match = re.fullmatch(r"(-?[\d.]+)(?: \+- ([\d.]+))?(?: \(1/2 finished\))?", row[1])  # no s.e. of one
        assert match and (match[2] is None) == row[1].endswith("(1/2 finished)"), row[1]
        assert math.isfinite(float(match[1])) and (match[2] is None or float(match[2]) >= 0)
    for row in rows[2:]:
        assert re.fullmatch(r"\d/2", row[4])  # paired wins over the two seeds
    for row in rows:
        spread(row[-1])  # sampling latency: a median inside its range
    assert re.search(r"\nThe student samples [\d.]+x \([\d.]+-[\d.]+x\) as fast as the teacher", text)
    seeds = table_rows("| seed |" + runs.split("\n\n", 1)[0])
    assert [row[0] for row in seeds] == ["0", "1"] and all(len(row) == len(arms) + 1 for row in seeds)


def test_distill_digits(tmp_path):
    report = run("distill_digits.py", tmp_path, "--root", str(tmp_path / "runs"), "--tarflow", "--clipped-skd", "1,10")
    check_stamp(report, "Distillation of flows on digits", "1")
    assert "timed: the sampling latency of one batch of 64" in report
    assert "| FD-digits | KD-digits |" in report
    clipped = re.search(r"`(ilkd\+skd-clip(1|10))` is ilkd\+skd with train.grad_clip = (1|10), chosen by the "
                        r"validation bits/dim of seed 0 among 1 \([\d.]+\), 10 \([\d.]+\)", report)
    assert clipped and clipped[2] == clipped[3], report
    check_distillation_table(report, "glow", ["nll", "lkd", "ilkd", "ilkd+skd", clipped[1]])
    check_distillation_table(report, "tarflow", ["nll", "ilkd"])
    assert "Teacher: 3 steps, chosen by validation" in report


def test_skd_gradients(tmp_path):
    report = run("skd_gradients.py", tmp_path)
    assert report.startswith("# The SKD term's gradient at the students' checkpoints\n")
    assert "--tiny smoke run" in report
    rows = table_rows(report)
    assert [(row[0], row[1]) for row in rows] == [("tiny", "0.7"), ("tiny", "0.5"), ("tiny", "0.3")]
    for row in rows:
        assert re.fullmatch(r"[0-2]/2", row[2])
        if row[2] != "2/2":
            assert 0 <= float(row[3]) <= float(row[4]) < math.inf


def test_distill_tabular(tmp_path):
    pytest.importorskip("sklearn", reason="scikit-learn (a dependency of nfkit-eval) ships the data")
    report = run("distill_tabular.py", tmp_path, "--root", str(tmp_path / "runs"))
    check_stamp(report, "Distillation of tabular flows on breast cancer", "1")
    for arch in ("maf", "realnvp"):
        check_distillation_table(report, arch, ["nll", "lkd", "ilkd", "ilkd+skd"])
    assert '"nll_unit": "bpd"' in report

def documented_commands() -> list[list[str]]:
    """Every ``python benchmarks/<script>.py ...`` command shown in a README, a docs page or a script's docstring (in
    inline code or as a line of a code block), split into words; optional words in brackets count, comments do not."""
    pages = [common.ROOT / "README.md", common.ROOT / "benchmarks" / "README.md",
             *common.ROOT.glob("packages/*/README.md"), *common.ROOT.glob("plugins/*/README.md"),
             *common.ROOT.glob("docs/**/*.rst"), *common.ROOT.glob("benchmarks/*.py")]
    commands = []
    for page in pages:
        text = page.read_text().replace("\\\\\n", " ").replace("\\\n", " ")  # continued lines, also in docstrings
        found = re.findall(r"`(python benchmarks/[^`]+)`", text) + re.findall(r"^\s*(python benchmarks/.+)$", text,
                                                                               re.MULTILINE)
        commands += [command.split(" #")[0].replace("[", " ").replace("]", " ").split() for command in found]
    return [command for command in commands if "<" not in command[1]]  # not the placeholder benchmarks/<script>.py


def test_documented_commands_use_existing_options():
    commands = documented_commands()
    scripts = {command[1] for command in commands}
    assert {"benchmarks/glow_maf.py", "benchmarks/denseflow.py", "benchmarks/tarflow.py",
            "benchmarks/train_throughput.py"} <= scripts
    helps = {}
    for script in scripts:
        completed = subprocess.run([sys.executable, str(common.ROOT / script), "--help"], cwd=common.ROOT,
                                   capture_output=True, text=True, timeout=1800)
        assert completed.returncode == 0, completed.stderr[-2000:]
        helps[script] = set(re.findall(r"--[\w-]+", completed.stdout))
    for command in commands:
        options = {word.split("=")[0] for word in command[2:] if word.startswith("--")}
        assert options <= helps[command[1]], (command, options - helps[command[1]])


def test_streamed_batches_leave_a_worker_in_shared_memory(tmp_path, monkeypatch):
    """A batch the queue's feeder thread would have to copy into shared memory can make a worker shut down mid-epoch
    abort; the streamed path's batches are in shared memory before they leave the worker, and only there (in the main
    process a segment per batch would only cost time)."""
    import data

    from nfkit_core.data.imagenet_npz import ImagenetNpzConfig
    from nfkit_core.data.shards import ShardedImages

    source = data.write_source(tmp_path / "source", 40, 8, per_file=20)
    data.convert(data.conversion_source(ImagenetNpzConfig(str(source))), tmp_path / "converted", splits=("train",),
                 progress=False)
    streamed = data.SequentialShards(ShardedImages(tmp_path / "converted", "train"), batch_size=16)
    monkeypatch.setattr(data, "get_worker_info", lambda: type("Worker", (), {"id": 0, "num_workers": 1})())
    batches = list(streamed)
    assert [len(images) for images, _ in batches] == [16, 4, 16, 4]  # two shards of 20 images
    assert all(images.is_shared() and images.dtype == torch.float32 for images, _ in batches)
    monkeypatch.setattr(data, "get_worker_info", lambda: None)
    assert [(len(images), images.is_shared()) for images, _ in streamed] == [(16, False), (4, False)] * 2
