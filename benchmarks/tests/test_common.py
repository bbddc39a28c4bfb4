"""The shared timing method of the benchmarks, checked with fake variants on a fake clock (and once on real sleeps)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import common
import pytest
import torch


class FakeClock:
    """A clock that only moves when a fake variant says it spent time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_variant(clock: FakeClock, name: str, costs, log: list[str]):
    """A variant that logs its name and advances ``clock`` by its next cost (the last one repeats)."""
    costs = list(costs)

    def call() -> None:
        log.append(name)
        clock.now += costs.pop(0) if len(costs) > 1 else costs[0]
    return call


def test_rounds_alternate_and_every_variant_gets_its_samples():
    clock, log = FakeClock(), []
    variants = {name: fake_variant(clock, name, [0.25], log) for name in "abc"}
    timings = common.time_alternating(variants, samples=4, sample_seconds=1.0, warmup=2, clock=clock)
    assert timings.order == tuple("abc" "cba" "abc" "cba")
    # Two warm-up calls each, in order, then samples of four calls each (4 x 0.25 s reaches the 1 s minimum).
    assert log[:6] == list("aabbcc")
    assert log[6:] == [name for name in timings.order for _ in range(4)]
    for name in "abc":
        assert timings[name].seconds == (0.25,) * 4
        assert timings[name].calls == (4,) * 4


def test_a_sample_lasts_at_least_the_minimum_and_averages_its_calls():
    clock, log = FakeClock(), []
    timings = common.time_alternating({"slow": fake_variant(clock, "slow", [0.4], log)}, samples=3,
                                      sample_seconds=1.0, warmup=0, clock=clock)
    # Three calls (1.2 s) are the first to reach 1 s.
    assert timings["slow"].calls == (3, 3, 3)
    assert timings["slow"].seconds == pytest.approx((0.4, 0.4, 0.4))
    clock, log = FakeClock(), []
    timings = common.time_alternating({"long": fake_variant(clock, "long", [5.0], log)}, samples=2,
                                      sample_seconds=1.0, warmup=1, clock=clock)
    assert timings["long"].calls == (1, 1) and timings["long"].seconds == (5.0, 5.0)


def test_self_timed_variants_count_their_own_seconds():
    clock, log = FakeClock(), []
    overhead = fake_variant(clock, "x", [10.0], log)  # untimed work, e.g. a checkpoint: the clock moves, unseen

    def variant() -> float:
        overhead()
        return 0.3

    timings = common.time_alternating({"x": variant}, samples=2, sample_seconds=1.0, warmup=0, clock=clock,
                                      self_timed=True)
    assert timings["x"].calls == (4, 4)
    assert timings["x"].seconds == pytest.approx((0.3, 0.3))


def test_median_spread_and_ratio_arithmetic():
    clock, log = FakeClock(), []
    # One call per sample (sample_seconds=0): the samples are exactly these costs, in round order.
    variants = {"fast": fake_variant(clock, "fast", [9.0, 1.0, 2.0, 3.0, 4.0, 2.0], log),
                "base": fake_variant(clock, "base", [9.0, 2.0, 6.0, 3.0, 8.0, 5.0], log)}
    timings = common.time_alternating(variants, samples=5, sample_seconds=0.0, warmup=1, clock=clock)
    fast, base = timings["fast"], timings["base"]
    assert fast.seconds == (1.0, 2.0, 3.0, 4.0, 2.0)
    assert base.seconds == (2.0, 6.0, 3.0, 8.0, 5.0)
    assert fast.spread == common.Spread(median=2.0, low=1.0, high=4.0, q1=2.0, q3=3.0)
    rate = fast.rate(10)  # items per second of every sample: 10, 5, 3.33, 2.5, 5
    assert (rate.median, rate.low, rate.high) == pytest.approx((5.0, 2.5, 10.0))
    speedup = timings.speedup("fast", "base")
    # Ratio of the medians 5 / 2; per-round ratios 2, 3, 1, 2, 2.5.
    assert speedup.median == pytest.approx(2.5)
    assert (speedup.low, speedup.high) == pytest.approx((1.0, 3.0))
    assert (speedup.q1, speedup.q3) == pytest.approx((2.0, 2.5))
    inverse = timings.speedup("base", "fast")
    assert inverse.median == pytest.approx(0.4)
    assert (inverse.low, inverse.high) == pytest.approx((1 / 3, 1.0))


def test_spread_of_values_and_its_format():
    spread = common.Spread.of([5.0, 1.0, 4.0, 2.0, 3.0])
    assert spread == common.Spread(median=3.0, low=1.0, high=5.0, q1=2.0, q3=4.0)
    assert common.Spread.of([7.0]) == common.Spread(7.0, 7.0, 7.0, 7.0, 7.0)
    assert common.Spread(1.0712, 0.98, 1.153, 1.0, 1.1).format(suffix="x") == "1.07x (0.98-1.15x)"
    assert common.Spread(70780.4, 59864.0, 71000.0, 0, 0).format() == "70,780 (59,864-71,000)"
    with pytest.raises(ValueError, match="at least one value"):
        common.Spread.of([])


def test_real_sleeps_on_the_wall_clock():
    timings = common.time_alternating({"short": lambda: time.sleep(0.01), "long": lambda: time.sleep(0.03)},
                                      samples=3, sample_seconds=0.05, warmup=1)
    for name, seconds in (("short", 0.01), ("long", 0.03)):
        assert len(timings[name].seconds) == 3
        assert all(s >= seconds for s in timings[name].seconds)
        assert all(calls * s >= 0.05 for calls, s in zip(timings[name].calls, timings[name].seconds))
    # The ratio of the nominal lengths is 3. Each sleep overshoots by a scheduling delay, which on a busy machine may
    # be a few milliseconds for either of them: that moves the ratio of medians down or, less, up.
    assert 1.5 < timings.speedup("short", "long").median <= 3.6


def test_fresh_processes_alternate():
    log = []
    results = common.run_alternating(lambda name: log.append(name) or name.upper(), {"a": ("a",), "b": ("b",)},
                                     rounds=3, fresh_process=False)
    assert log == list("abbaab")
    assert results == {"a": ["A"] * 3, "b": ["B"] * 3}
    pids = common.run_alternating(os.getpid, {"a": (), "b": ()}, rounds=2)
    everyone = pids["a"] + pids["b"]
    assert len(set(everyone)) == 4 and os.getpid() not in everyone


def test_rounds_are_shared_out_over_the_processes():
    assert common.split_rounds(9, 3) == [3, 3, 3]
    assert common.split_rounds(8, 3) == [3, 3, 2]
    assert common.split_rounds(5, 1) == [5]
    with pytest.raises(ValueError, match="processes"):
        common.split_rounds(2, 3)


def timings(seconds: dict[str, tuple[float, ...]]) -> common.Timings:
    """Timings of one call per sample, taken in the order a, b (one round)."""
    variants = {name: common.Timing(values, (1,) * len(values)) for name, values in seconds.items()}
    return common.Timings(variants, tuple(name for round_ in zip(*seconds.values()) for name in seconds))


def test_merging_pools_the_samples_of_every_process_and_keeps_other_values():
    first = {"params": 10, "rows": [timings({"a": (1.0, 2.0), "b": (2.0, 4.0)})], "pair": (timings({"a": (1.0,)}),)}
    second = {"params": 10, "rows": [timings({"a": (3.0,), "b": (9.0,)})], "pair": (timings({"a": (5.0,)}),)}
    merged = common.merge_processes([first, second])
    assert merged["params"] == 10
    pooled = merged["rows"][0]
    assert pooled["a"].seconds == (1.0, 2.0, 3.0) and pooled["b"].seconds == (2.0, 4.0, 9.0)
    assert pooled.order == ("a", "b", "a", "b", "a", "b")
    assert merged["pair"][0]["a"].seconds == (1.0, 5.0)
    # The ratio of the pooled medians (4 / 2), its range that of the three rounds' ratios (2, 2, 3).
    assert pooled.speedup("a", "b") == common.Spread(2.0, 2.0, 3.0, 2.0, 2.5)
    with pytest.raises(TypeError, match="Spread"):
        common.merge_processes([common.Spread.of([1.0]), common.Spread.of([2.0])])


FAKE_SCRIPT = """
import json, os, sys
sys.path.insert(0, {benchmarks!r})
import common, torch


def measure(args):
    seconds = (float(os.getpid()),) * args.samples
    return {{"pid": os.getpid(), "threads": torch.get_num_threads(),
            "timings": common.Timings({{"pid": common.Timing(seconds, (1,) * args.samples)}}, ("pid",) * args.samples)}}


if __name__ == "__main__":
    args = common.parse_args(common.make_parser("fake"), sys.argv[1:])
    result = common.time_in_processes(measure, args)
    print(json.dumps({{"parent": os.getpid(), "pid": result["pid"], "threads": result["threads"],
                      "pids": result["timings"]["pid"].seconds}}))
"""


def run_fake_script(tmp_path, *argv: str) -> dict:
    """A script whose timing (one variant, each sample the id of the process that took it) runs through
    :func:`common.time_in_processes`, as every benchmark's does: its measure function lives in the script itself."""
    script = tmp_path / "fake_benchmark.py"
    script.write_text(FAKE_SCRIPT.format(benchmarks=str(Path(common.__file__).parent)))
    completed = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def test_a_script_times_in_fresh_processes_one_after_another(tmp_path):
    result = run_fake_script(tmp_path, "--threads", "1", "--samples", "5", "--processes", "2")
    pids = result["pids"]
    assert len(pids) == 5 and len(set(pids[:3])) == len(set(pids[3:])) == 1  # shares of 3 and 2
    assert pids[0] != pids[3] and result["parent"] not in pids and result["pid"] == pids[0]
    assert result["threads"] == 1  # --threads reaches every process
    alone = run_fake_script(tmp_path, "--samples", "2", "--processes", "1")
    assert alone["pids"] == [alone["parent"]] * 2 == [alone["pid"]] * 2


def test_an_error_in_a_fresh_process_comes_back_with_its_traceback():
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        common.call_in_fresh_process(divmod, 1, 0)


def test_a_fresh_process_starts_its_own_processes_the_platforms_default_way():
    """A spawned process would spawn a data loader's workers too (a new interpreter each, which finalizes itself at
    shutdown); a script run from the shell forks them on Linux."""
    assert common.call_in_fresh_process(multiprocessing.get_start_method) == multiprocessing.get_start_method()


def test_peak_memory_resets_between_blocks():
    with common.PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written
        del block
    assert 60 < memory.mib < 100
    with common.PeakMemory(torch.device("cpu")) as memory:
        small = torch.ones(2**20 // 4)
        del small
    assert memory.mib < 20


def parse(*argv: str):
    return common.parse_args(common.make_parser("test"), list(argv))


def test_options_tiny_and_checks(tmp_path):
    threads = torch.get_num_threads()
    try:
        args = parse("--tiny", "--threads", "1", "--output", str(tmp_path / "t.md"))
        assert (args.samples, args.sample_seconds, args.warmup, args.memory_rounds, args.processes) == (3, 0.0, 1, 1,
                                                                                                         2)
        assert args.threads == 1 == torch.get_num_threads()
        with pytest.raises(SystemExit):
            parse("--tiny", "--output", str(common.RESULTS / "x.md"))
        with pytest.raises(SystemExit):
            parse("--clock", "thread", "--threads", "2")
        with pytest.raises(SystemExit):
            parse("--samples", "0")
        with pytest.raises(SystemExit):
            parse("--samples", "2", "--processes", "3")
    finally:
        torch.set_num_threads(threads)


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu avx2 avx512f avx512_bf16

processor\t: 1
model name\t: another name
"""


def test_describe_cpu_tells_apart_cpus_that_share_a_model_name():
    genoa = common.describe_cpu(CPUINFO, "AVX512")
    assert genoa == ("AMD EPYC (cpu family 25, model 17, stepping 1; PyTorch kernels: AVX512; "
                     "bf16 arithmetic: native (avx512_bf16))")
    milan = common.describe_cpu(CPUINFO.replace("model\t\t: 17", "model\t\t: 1").replace(" avx512f avx512_bf16", ""),
                                "AVX2")
    assert milan == "AMD EPYC (cpu family 25, model 1, stepping 1; PyTorch kernels: AVX2; bf16 arithmetic: emulated)"
    assert common.describe_cpu("", "DEFAULT").endswith("(PyTorch kernels: DEFAULT)")  # no /proc/cpuinfo
    graviton3 = ("processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"
                 "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\n"
                 "CPU revision\t: 1\n")
    assert common.describe_cpu(graviton3, "SVE256").endswith(
        "(CPU implementer 0x41, CPU part 0xd40, CPU variant 0x1, CPU revision 1; PyTorch kernels: SVE256; "
        "bf16 arithmetic: native (bf16))")


def test_stamp_names_commit_cpu_threads_date_and_method():
    threads = torch.get_num_threads()
    try:
        args = parse("--threads", "1", "--samples", "5", "--processes", "2", "--note", "shared machine")
        text = common.Stamp("A benchmark", args).render(["zuko 1.0"])
    finally:
        torch.set_num_threads(threads)
    assert text.startswith("# A benchmark\n")
    assert f"commit {common.commit()}" in text
    assert common.cpu_description() in text and "torch threads: 1" in text
    assert time.strftime("%Y-%m-%d", time.gmtime()) in text and " UTC" in text
    assert "5 alternating rounds" in text and "note: shared machine" in text and "- zuko 1.0" in text
    assert "in 2 fresh processes one after another (3 + 2 rounds), the samples pooled" in text
