"""
Write a plugin and use it
=========================

Every architecture nf can train comes from a plugin: a distribution that names a module under the ``nfkit``
entry-point group, in which functions marked ``@hookimpl`` register what it provides. This tutorial takes the
complete example package of the plugin guide (:doc:`/plugins`; its files are in the repository under
``docs/plugin_example``), registers it, checks it with the conformance suite, and trains its architecture
``my-flow`` through nf's trainer.

**Installed or registered in-process.** A user installs the package (``pip install ./nf-my-flow``, as the guide
shows; the test ``integration_tests/test_docs_plugin_example.py`` does exactly that in a fresh environment and
trains one step with ``nf train``). This page does not install anything while the documentation builds: it imports
the package from its source folder and hands its plugin module to a :class:`~nfkit_core.plugins.PluginManager`
with :meth:`~nfkit_core.plugins.PluginManager.register`, which is what loading the entry point does. Run it from
a checkout of the repository (its root or ``docs/tutorials``). It needs ``nfkit-core[train]``.
"""

# %%
# The package
# -----------
# ``pyproject.toml`` declares the plugin: the entry point ``my-flow`` in the group ``nfkit`` points at the module
# ``nf_my_flow.plugin``:
#
# .. literalinclude:: /plugin_example/pyproject.toml
#    :language: toml
#    :lines: 15-16
#
# That module implements one hook, ``nf_register_architectures``, which adds an
# :class:`~nfkit_core.specs.ArchitectureSpec`: a name, a config dataclass, a build function returning a
# :class:`~nfkit_core.NormalizingFlow`, a description and presets:
#
# .. literalinclude:: /plugin_example/src/nf_my_flow/plugin.py
#    :language: python
#
# The build function composes a coupling layer written from scratch (``nf_my_flow/coupling.py``) with
# :class:`~nfkit_core.layers.Reverse` under a standard normal prior; the guide prints every file.
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from nfkit_core.checkpoint import load_checkpoint
from nfkit_core.plugins import PluginManager
from nfkit_core.testing import check_flow, check_transform
from nfkit_core.train import Trainer, make_run_config

torch.set_num_threads(1)
example = next((path for path in (Path("docs/plugin_example"), Path("../plugin_example")) if path.is_dir()), None)
if example is None:
    raise SystemExit("run this tutorial from a checkout of nf: it imports the plugin in docs/plugin_example")
sys.path.insert(0, str(example / "src"))

import nf_my_flow.plugin  # noqa: E402  (importable once its source folder is on the path)
from nf_my_flow import HalfAffineCoupling  # noqa: E402

# %%
# Register it
# -----------
# A :class:`~nfkit_core.plugins.PluginManager` loads every installed plugin (nfkit-core's built-ins, the
# architecture packages); ``register`` adds one more by hand, under the name and distribution that ``nf plugins``
# would show. Its registry then knows ``my-flow`` next to the installed architectures. (Where the package is
# installed, its entry point has already registered ``my-flow``: nothing to add.)
manager = PluginManager()
if not manager.has_plugin("my-flow"):
    manager.register(nf_my_flow.plugin, "my-flow", distribution="nf-my-flow", version="0.1.0")
registry = manager.registry
print(f"architectures: {registry.architectures.names()}")
print(f"my-flow registered {manager.info('my-flow').registered}; "
      f"presets {registry.architectures.get('my-flow').presets}")

# %%
# Check it
# --------
# The package's tests (``tests/test_my_flow.py``) run nfkit-core's conformance suite on its layer and its flow. The
# layer, here: the largest errors measured, far below the suite's tolerances (1e-5 for the fp32 round trip, 1e-6
# for the log-determinant against the float64 autograd Jacobian). The suite perturbs the zero-initialised layer
# first, so it checks a coupling that is not the identity.
layer_errors = check_transform(lambda: HalfAffineCoupling(5, hidden=8), torch.randn(4, 5))
print(f"layer: round trip {layer_errors['roundtrip']:.1e}, "
      f"log-det vs Jacobian {layer_errors['log_det_vs_jacobian']:.1e}")

# %%
# Train it
# --------
# The trainer, ``nf sample`` and :func:`~nfkit_core.checkpoint.load_checkpoint` find architectures through a
# registry; passing this one is what ``nf train --arch my-flow --data toy2d`` does with the process-wide registry
# once the package is installed. The ``toy2d`` preset (8 couplings of 64 hidden units) on the ``8gaussians``
# distribution, 400 steps:
run_dir = Path(tempfile.mkdtemp(prefix="nf-tutorial-")) / "my-flow"
run = make_run_config("my-flow", "toy2d", preset="toy2d", data={"distribution": "8gaussians"},
                      train={"steps": 400, "batch_size": 256, "lr": 3e-3, "warmup_steps": 20, "val_every": 400,
                             "progress": False}, registry=registry)
report = Trainer(run, run_dir, registry=registry).fit()
flow = load_checkpoint(run_dir, registry=registry)
print(f"{type(flow).__name__} of {sum(p.numel() for p in flow.parameters()):,} parameters; "
      f"test NLL {report['test_nats']:.3f} nats per point")

# %%
# The trained flow passes :func:`~nfkit_core.testing.check_flow` too (on 8 data points): its latent round trip and
# the log-determinant of the whole transform against its Jacobian.
data = registry.load_dataset("toy2d", run.data, "test")
flow_errors = check_flow(flow, torch.stack([data[i][0] for i in range(8)]))
print(f"flow: latent round trip {flow_errors['latent_roundtrip']:.1e}, "
      f"log-det vs Jacobian {flow_errors['log_det_vs_jacobian']:.1e}")

# %%
# Its density on a grid, and its samples. The eight Gaussians have a standard deviation of
# :math:`\sigma = 0.5 / 1.414 \approx 0.35` and barely overlap, so the true density's NLL is about
# :math:`\log 8 + \log(2\pi e\,\sigma^2) \approx 2.08 + 0.76 = 2.84` nats: 400 steps of this small flow leave
# part of the mass between the modes.
side = torch.linspace(-4.5, 4.5, 200)
xx, yy = torch.meshgrid(side, side, indexing="xy")
with torch.no_grad():
    density = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], dim=1)).exp().reshape(200, 200)
    samples = flow.sample(2_000, generator=torch.Generator().manual_seed(0))
fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.8), sharex=True, sharey=True)
left.imshow(density, origin="lower", extent=(-4.5, 4.5, -4.5, 4.5))
left.set_title("my-flow: density")
right.scatter(*samples.T, s=1, alpha=0.5)
right.set_title("2,000 samples")
for axis in (left, right):
    axis.set_aspect("equal")
fig.tight_layout()
