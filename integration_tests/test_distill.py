"""nfkit-distill across the architectures: declared intermediates, pairing, frozen teacher, the command line, a short
distillation on breast cancer that beats likelihood-only training at the same steps, and one on digits that pulls the
student's latents towards its teacher's."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from nfkit_core import noise
from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.cli import main
from nfkit_core.specs import DataInfo
from nfkit_core.train import Trainer, make_run_config
from nfkit_distill import (
    DistillationConfig,
    DistillationMismatchError,
    DistillTrainer,
    ILKDConfig,
    Pairing,
    build_objective,
    distill,
    student_run,
)
from nfkit_distill.alignment import capture, matchable_intermediates

DIGITS = DataInfo(shape=(1, 8, 8), num_classes=0, num_bins=17)
QUIET = {"progress": False, "val_every": 10**6, "sample_every": 10**6, "log_every": 1, "precision": "fp32"}
SMALL = {
    "glow": {"num_levels": 2, "steps_per_level": 2, "hidden_channels": 8},
    "maf": {"num_layers": 2, "hidden_features": 16, "hidden_layers": 1},
    "realnvp": {"scales": 2, "couplings": 1, "hidden": 8},
    "tarflow": {"patch_size": 2, "channels": 16, "head_dim": 8, "num_blocks": 2, "layers_per_block": 1},
    "denseflow": {},
}


def build(registry, arch, data=DIGITS, **options):
    spec = registry.architectures.get(arch)
    torch.manual_seed(0)
    preset = "digits-tiny" if arch == "denseflow" else None
    return registry.build_flow(arch, spec.make_config(preset, **{**SMALL[arch], **options}), data).eval()


@pytest.mark.parametrize(("arch", "data"), [("glow", DIGITS), ("maf", DIGITS), ("realnvp", DIGITS),
                                            ("realnvp", DataInfo(shape=(6,))), ("tarflow", DIGITS),
                                            ("denseflow", DIGITS)])
def test_every_architecture_declares_intermediates_ending_at_the_final_latent(registry, arch, data):
    flow = build(registry, arch, data)
    levels = matchable_intermediates(flow)
    torch.manual_seed(1)
    x = torch.randint(0, 17, (3, *data.shape)) if arch == "denseflow" else torch.randn(3, *data.shape) * 0.5
    names = [name for level in levels for name in level]
    with torch.no_grad(), capture(flow, names) as outputs, noise.use(torch.Generator().manual_seed(0)):
        latent = flow.transform_to_latent(x)
    assert set(outputs) == set(names)
    torch.testing.assert_close(outputs[levels[-1][-1]], latent)


def test_pairing_follows_the_rule_and_is_printed(registry):
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    glow = Pairing.check(build(registry, "glow", steps_per_level=8), build(registry, "glow"), x)
    assert [(p.student, p.teacher) for p in glow.pairs] == [("level0.split", "level0.split"), ("level1", "level1")]
    maf = Pairing.check(build(registry, "maf", num_layers=6), build(registry, "maf", num_layers=3), x)
    assert [(p.student, p.teacher) for p in maf.pairs] == [("layer0", "layer1"), ("layer1", "layer3"),
                                                           ("layer2", "layer5")]
    tarflow = Pairing.check(build(registry, "tarflow", num_blocks=4), build(registry, "tarflow"), x)
    assert [(p.student, p.teacher) for p in tarflow.pairs] == [("block0", "block1"), ("block1", "block3")]
    assert tarflow.describe().splitlines()[1:] == ["  level 0: block0 <- block1  (16, 4)",
                                                   "  level 0: block1 <- block3  (16, 4)"]


def test_mismatched_teacher_and_student_are_refused_before_training(registry):
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    with pytest.raises(DistillationMismatchError, match="teacher has 3 levels and the student 2"):
        Pairing.check(build(registry, "glow", num_levels=3), build(registry, "glow"), x)
    with pytest.raises(DistillationMismatchError, match=r"final latent has shape \(8, 2, 2\), the student's"):
        Pairing.check(build(registry, "glow"), build(registry, "realnvp"), x)
    with pytest.raises(DistillationMismatchError, match="shapes must agree"):
        Pairing.check(build(registry, "tarflow", patch_size=4), build(registry, "tarflow"), x)


def test_a_glow_student_identical_to_its_teacher_has_zero_distillation_loss(registry):
    teacher = build(registry, "glow")
    student = copy.deepcopy(teacher)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    shared = DistillationConfig(latent_weight=1.0, sample_weight=1.0, shared_split_noise=True, factored_out=True)
    with noise.use(torch.Generator().manual_seed(0)):
        _, _, terms = build_objective(shared, teacher, student, x)(student, x)
    assert terms["latent"].item() == 0.0 and terms["sample"].item() == 0.0
    independent = DistillationConfig(latent_weight=1.0, sample_weight=1.0)
    with noise.use(torch.Generator().manual_seed(0)):
        _, _, terms = build_objective(independent, teacher, student, x)(student, x)
    assert terms["latent"].item() == 0.0 and terms["sample"].item() > 0.01  # the split halves are drawn apart


@pytest.fixture(scope="module")
def maf_teacher(tmp_path_factory):
    """A MAF (with batch norm) trained for a few steps on digits: its running statistics would move in train mode."""
    out = tmp_path_factory.mktemp("distill") / "maf-teacher"
    run = make_run_config("maf", "digits", model=SMALL["maf"], train={**QUIET, "steps": 3, "batch_size": 32})
    trainer = Trainer(run, out)
    trainer.fit()
    return out


def test_the_teacher_stays_frozen(registry, maf_teacher, tmp_path):
    run = student_run(maf_teacher, model={"num_layers": 1, "hidden_features": 16},
                      train={**QUIET, "steps": 3, "batch_size": 32})
    trainer = DistillTrainer(run, tmp_path / "student", teacher=maf_teacher, distiller="ilkd")
    teacher = trainer.distillation.teacher
    before = copy.deepcopy(teacher.state_dict())
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    student_before = copy.deepcopy(trainer.flow.state_dict())
    trainer.fit(until=2)
    trainer.use_distiller("ilkd+skd")  # the paper's warm start
    trainer.fit()
    assert json.loads((tmp_path / "student" / "distill.json").read_text())["from_step"] == 2
    rows = [json.loads(line) for line in (tmp_path / "student" / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(r) for r in rows if "distill_nll" in r] == [["distill_latent", "distill_nll", "step"]] * 2 + [
        ["distill_latent", "distill_nll", "distill_sample", "step"]]
    assert not teacher.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not optimized & {id(p) for p in teacher.parameters()}
    for key, value in teacher.state_dict().items():  # weights and batch-norm running statistics
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert any(not torch.equal(v, student_before[k]) for k, v in trainer.flow.state_dict().items())


def test_nf_distill_writes_an_ordinary_run_that_resumes_and_samples(maf_teacher, tmp_path, capsys):
    out = tmp_path / "student"
    args = ["distill", "--teacher", str(maf_teacher), "--set", "model.num_layers=1", "--set",
            "model.hidden_features=16", "--set", "train.steps=2", "--set", "train.batch_size=32",
            "--set", "train.progress=false", "--set", "train.val_every=100",
            "--loss", "ilkd", "--lambdas", "0.8,0.2,0", "--set", "distill.latent_distance=l1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "level 0: layer0 <- layer1  (64,)" in printed
    assert "0.8 * NLL (bpd) + 0.2 * ILKD (l1)" in printed
    settings = json.loads((out / "distill.json").read_text())
    assert settings["distiller"] == "ilkd" and settings["options"]["latent_weight"] == 0.2
    assert main(["distill", "--resume", str(out), "--set", "train.steps=3"]) == 0
    assert json.loads((out / "report.json").read_text())["steps"] == 3
    assert load_checkpoint(out).transform.names() == ["flatten", "layer0"]
    assert main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "samples.png")]) == 0
    assert main(["distill", "--teacher", str(maf_teacher), "--arch", "glow", "--out", str(tmp_path / "bad"),
                 "--set", "train.steps=1", "--set", "train.progress=false"]) == 2
    assert "levels" in capsys.readouterr().err


def test_a_short_distillation_lowers_the_students_held_out_bits_per_dim_below_likelihood_only_training(tmp_path):
    """A MAF teacher (6 MADE blocks) trained by likelihood on breast cancer, then two students of its architecture with
    the same seed, initialisation, batches and optimizer for 300 steps: likelihood only, and ILKD (every block matched)
    with weights (0.5, 0.5) through :func:`nfkit_distill.distill`. The distilled student reaches a lower test bits/dim.

    The regime is one where the student can represent its teacher: on digits (Glow, MAF) and with a shallower MAF
    student on breast cancer, a short ILKD or LKD run measured no robust gain at any weight (see the report of
    benchmarks/results/distill_tabular.md for the longer comparison).
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data.astype(np.float32)  # 569 x 30; the dataset standardises with training statistics
    order = np.random.default_rng(0).permutation(len(data))
    for name, part in zip(("train", "val", "test"), np.split(data[order], [341, 455])):
        np.save(tmp_path / f"{name}.npy", part)
    maf = {"num_layers": 6, "hidden_features": 32, "hidden_layers": 2}
    common = {**QUIET, "batch_size": 64, "lr": 3e-3, "warmup_steps": 50, "log_every": 100}
    teacher_dir = tmp_path / "teacher"
    teacher = Trainer(make_run_config("maf", "tabular", model=maf, data={"root": str(tmp_path)},
                                      train={**common, "steps": 400, "seed": 1000}), teacher_dir).fit()
    train = {**common, "steps": 300, "seed": 0}
    alone = Trainer(make_run_config("maf", "tabular", model=maf, data={"root": str(tmp_path)}, train=train),
                    tmp_path / "alone").fit()
    distilled = distill(teacher_dir, tmp_path / "distilled", model=maf, train=train, loss="ilkd",
                        options={"nll_weight": 0.5, "latent_weight": 0.5})

    assert teacher["test_bpd"] < alone["test_bpd"] - 0.03  # measured: 0.1849 against 0.2515
    # Measured over student seeds 0-9 (this one: 0.1213 against 0.2515): the distilled student lower by 0.031-0.130
    # bits/dim on test in every seed; on validation (where the regime was chosen) by -0.005-0.311, 9 of 10 seeds.
    assert distilled["test_bpd"] < alone["test_bpd"] - 0.02


def test_a_short_distillation_on_digits_pulls_the_student_to_its_teacher_at_little_likelihood_cost(tmp_path):
    """40 steps of a 1-step-per-level Glow, by likelihood alone and by ILKD (paper weights), from a 4-step teacher.

    At this length ILKD does not lower the student's held-out bits/dim: measured 4.0418 against 4.0292 for the
    likelihood-only student (teacher 2.9841); benchmarks/results/distill_digits.md has the 5-seed comparison. What it
    does is what it says, if weakly at the paper's weights: the held-out latents move towards the teacher's.
    """
    common = {**QUIET, "batch_size": 64, "lr": 2e-3, "warmup_steps": 10, "log_every": 10}
    teacher_dir = tmp_path / "teacher"
    Trainer(make_run_config("glow", "digits", model={"num_levels": 2, "steps_per_level": 4, "hidden_channels": 32},
                            train={**common, "steps": 120, "seed": 1}), teacher_dir).fit()
    student = {"num_levels": 2, "steps_per_level": 1, "hidden_channels": 16}
    train = {**common, "steps": 40, "seed": 2}
    alone = Trainer(make_run_config("glow", "digits", model=student, train=train), tmp_path / "alone")
    alone_report = alone.fit()
    distilled = DistillTrainer(student_run(teacher_dir, model=student, train=train), tmp_path / "distilled",
                               teacher=teacher_dir, distiller="ilkd")
    distilled_report = distilled.fit()

    test_set = distilled.load_split("test")
    x, labels = next(iter(torch.utils.data.DataLoader(test_set, batch_size=len(test_set))))
    with noise.use(torch.Generator().manual_seed(0)):
        x, _ = distilled.preprocessing(x, labels, train=False)
    teacher = load_checkpoint(teacher_dir)

    @torch.no_grad()
    def held_out_ilkd(flow):
        return build_objective(ILKDConfig(), teacher, flow.eval(), x)(flow, x)[2]["latent"].item()

    far, near = held_out_ilkd(alone.flow), held_out_ilkd(distilled.flow)
    assert near < 0.97 * far  # measured: 1.9236 against 2.0162 (4.6% closer)
    assert abs(distilled_report["test_bpd"] - alone_report["test_bpd"]) < 0.05  # measured: +0.0125


def test_the_documented_commands_and_python_api(tmp_path, monkeypatch):
    """README and docs: nf train, nf distill --student-preset digits-tiny --loss ilkd, nf sample, and distill(...),
    each shortened to a few steps."""
    monkeypatch.chdir(tmp_path)
    short = ["--set", "train.steps=2", "--set", "train.progress=false", "--set", "train.val_every=100"]
    assert main(["train", "--arch", "glow", "--data", "digits", "--out", "runs/teacher", *short]) == 0
    assert main(["distill", "--teacher", "runs/teacher", "--student-preset", "digits-tiny", "--loss", "ilkd",
                 "--out", "runs/student", *short]) == 0
    assert main(["sample", "runs/student", "-n", "64", "--out", "student.png"]) == 0
    report = distill("runs/teacher", "runs/api", preset="digits-tiny", loss="ilkd",
                     train={"steps": 2, "progress": False, "val_every": 100})
    student = json.loads((tmp_path / "runs/student/run.json").read_text())
    assert student["preset"] == "digits-tiny" and report["steps"] == 2
    assert json.loads((tmp_path / "runs/api/distill.json").read_text())["distiller"] == "ilkd"
