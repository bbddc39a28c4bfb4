"""The conformance suite: checks that every layer and every flow of every plugin must pass.

Use it in tests::

    from nfkit_core.testing import check_flow, check_transform

    def test_my_layer():
        check_transform(lambda: MyLayer(4), torch.randn(3, 4, 4, 4))

Each check raises :class:`AssertionError` with a message ``"<check>: <what failed, with the numbers>"``; an error the
model itself raises during a check (a broadcasting ``RuntimeError``, a ``ValueError`` about a log-det shape) is
reported the same way, naming the check it happened in. Both functions work on a copy or a fresh instance, so the
caller's objects are not changed, and return the measured errors so that a test can print or compare them.

Before :func:`check_transform` measures anything it runs one forward pass in training mode (data-dependent
initialisation) and then adds Gaussian noise of scale ``perturb`` to every parameter. Many layers start as the
identity or with zero-initialised output convolutions, where a wrong log-determinant or a parameter cut off from the
graph would go unnoticed; after the perturbation every parameter matters, so the checks can require a non-zero
gradient for each of them.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Collection, Iterator

import torch
from torch import Tensor, nn

from nfkit_core import noise
from nfkit_core.flow import Flow
from nfkit_core.transform import Bijector, Sequential, Transform

__all__ = ["check_transform", "check_flow"]


def _fail(check: str, message: str) -> AssertionError:
    return AssertionError(f"{check}: {message}")


@contextlib.contextmanager
def _checking(check: str) -> Iterator[None]:
    """Report an exception the model raises inside the block as a failure of ``check``."""
    try:
        yield
    except AssertionError:
        raise
    except Exception as error:
        raise _fail(check, f"the model raised {type(error).__name__}: {error}") from error


def _max_error(a: Tensor, b: Tensor) -> float:
    return (a.detach().double() - b.detach().double()).abs().max().item() if a.numel() else 0.0


def _assert_close(check: str, what: str, actual: Tensor, expected: Tensor, tol: float) -> float:
    """Assert ``|actual - expected| <= tol * (1 + |expected|)`` element-wise; return the largest absolute error."""
    if actual.shape != expected.shape:
        raise _fail(check, f"{what}: shape {tuple(actual.shape)} differs from {tuple(expected.shape)}")
    error = _max_error(actual, expected)
    allowed = tol * (1 + expected.detach().double().abs())
    if not bool(((actual.detach().double() - expected.detach().double()).abs() <= allowed).all()):
        raise _fail(check, f"{what}: max abs error {error:.3g} exceeds tolerance {tol:.3g} (relative to 1 + |value|)")
    return error


def _assert_equal(check: str, what: str, actual: Tensor, expected: Tensor) -> None:
    if actual.shape != expected.shape or not torch.equal(actual, expected):
        detail = (f"max abs difference {_max_error(actual, expected):.3g}" if actual.shape == expected.shape
                  else f"shapes {tuple(actual.shape)} and {tuple(expected.shape)}")
        raise _fail(check, f"{what} are not identical ({detail})")


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _run(layer: Transform, direction: str, inputs: Tensor, context: Tensor | None,
         source: noise.NoiseSource | torch.Generator | int = 0) -> tuple[Tensor, Tensor]:
    """One pass of ``layer`` in ``direction`` with noise from ``source`` (an int seeds a fresh generator)."""
    source = _seeded(source) if isinstance(source, int) else source
    with noise.use(source):
        return layer(inputs, context) if direction == "forward" else layer.inverse(inputs, context)


def _slice(context: Tensor | None, i: int) -> Tensor | None:
    return None if context is None else context[i:i + 1]


def _check_outputs(check: str, inputs: Tensor, output: object) -> tuple[Tensor, Tensor]:
    if not (isinstance(output, tuple) and len(output) == 2):
        raise _fail(check, f"expected a pair (output, log_det), got {type(output).__name__}")
    out, log_det = output
    if tuple(log_det.shape) != (inputs.shape[0],):
        raise _fail(check, f"log_det has shape {tuple(log_det.shape)}, expected ({inputs.shape[0]},)")
    if out.shape[0] != inputs.shape[0]:
        raise _fail(check, f"output batch {out.shape[0]} differs from input batch {inputs.shape[0]}")
    if inputs.is_floating_point() and out.dtype != inputs.dtype:
        raise _fail(check, f"output dtype {out.dtype} differs from input dtype {inputs.dtype}")
    if not (torch.isfinite(out).all() and torch.isfinite(log_det).all()):
        raise _fail(check, "output or log_det contains NaN or infinite values")
    return out, log_det


def _draws(layer: Transform, direction: str, inputs: Tensor, context: Tensor | None) -> list[Tensor]:
    record = noise.Record(noise.GeneratorNoise(_seeded(0)))
    _run(layer, direction, inputs, context, record)
    return record.draws


def _perturb(module: nn.Module, scale: float, seed: int) -> None:
    generator = _seeded(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator).to(parameter))


def _check_roundtrip(layer: Transform, x: Tensor, context: Tensor | None, atol: float, mode: str,
                     forward_draws: bool) -> float:
    check = f"roundtrip[{mode}]"
    _check_options_ignored(layer, x, context)
    z, log_det = _check_outputs(check, x, _run(layer, "forward", x, context))
    if layer.is_bijective:
        x_back, inverse_log_det = _check_outputs(check, z, _run(layer, "inverse", z, context))
        _assert_close(check, "inverse log_det vs -forward log_det", inverse_log_det, -log_det, atol)
        return _assert_close(check, "inverse(forward(x)) vs x", x_back, x, atol)
    if forward_draws:  # stochastic forward, deterministic inverse: inverse is a left-inverse
        x_back, _ = _check_outputs(check, z, _run(layer, "inverse", z, context))
        return _assert_close(check, "inverse(forward(x)) vs x (left-inverse)", x_back, x, atol)
    x_gen, _ = _check_outputs(check, z, _run(layer, "inverse", z, context, 1))  # stochastic inverse
    z_back, _ = _check_outputs(check, x_gen, _run(layer, "forward", x_gen, context))
    return _assert_close(check, "forward(inverse(z)) vs z (right-inverse)", z_back, z, atol)


def _check_jacobian(layer: Transform, x: Tensor, context: Tensor | None, samples: int, tol: float,
                    check: str = "log_det_vs_jacobian") -> float:
    """Forward log_det against ``log |det J|`` of the flattened per-sample map, in float64."""
    layer = copy.deepcopy(layer).double().eval()
    worst = 0.0
    for i in range(min(samples, x.shape[0])):
        xi = x[i:i + 1].double()
        ci = _slice(context, i)
        ci = ci.double() if ci is not None and ci.is_floating_point() else ci

        def flat_forward(v: Tensor, ci: Tensor | None = ci, shape: torch.Size = xi.shape) -> Tensor:
            return _run(layer, "forward", v.reshape(shape), ci)[0].reshape(-1)

        jacobian = torch.autograd.functional.jacobian(flat_forward, xi.reshape(-1), vectorize=True)
        if jacobian.shape[0] != jacobian.shape[1]:
            raise _fail(check, f"the flattened Jacobian is {tuple(jacobian.shape)}, not square")
        expected = torch.linalg.slogdet(jacobian).logabsdet
        log_det = _run(layer, "forward", xi, ci)[1][0]
        worst = max(worst, _assert_close(check, f"sample {i}: log_det {log_det.item():.6g} vs log|det J| "
                                                f"{expected.item():.6g}", log_det, expected, tol))
    return worst


def _check_options_ignored(layer: Transform, x: Tensor, context: Tensor | None) -> None:
    """``inverse`` takes per-call sampling options and ignores the ones it does not know (the Bijector contract)."""
    check = "inverse_options"
    z = _run(layer, "forward", x, context)[0]
    source = _seeded(5)
    with noise.use(source):
        try:
            layer.inverse(z, context, nfkit_conformance_probe=True)
        except TypeError as error:
            raise _fail(check, f"inverse(z, context, **options) must accept sampling options it does not use "
                               f"(add **options to its signature): {error}") from None


def _bijective_parts(transform: Transform, y: Tensor, context: Tensor | None) -> list[tuple[str, Transform, Tensor]]:
    """The largest bijective sub-transforms of ``transform`` (recursing into :class:`Sequential` steps that are not
    bijective), each with the input it receives when ``transform`` runs on ``y``."""
    parts: list[tuple[str, Transform]] = []

    def collect(module: Transform, path: str) -> None:
        if module.is_bijective:
            parts.append((path or "transform", module))
        elif isinstance(module, Sequential):
            for name, step in module.transforms.items():
                collect(step, f"{path}.{name}" if path else name)

    collect(transform, "")
    inputs: dict[str, Tensor] = {}

    def keep(path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            inputs.setdefault(path, args[0].detach())
        return hook

    handles = [module.register_forward_hook(keep(path)) for path, module in parts]
    try:
        with torch.no_grad():
            _run(transform, "forward", y, context)
    finally:
        for handle in handles:
            handle.remove()
    return [(path, module, inputs[path]) for path, module in parts if path in inputs]


def _check_independence(layer: Transform, x: Tensor, context: Tensor | None, atol: float, samples: int) -> float:
    """A batch gives the same results as each sample alone with its own context (and its own slice of the noise)."""
    worst = 0.0
    z = _run(layer, "forward", x, context)[0]
    for direction, inputs in (("forward", x), ("inverse", z)):
        check = f"per_sample_independence[{direction}]"
        record = noise.Record(noise.GeneratorNoise(_seeded(0)))
        batch_out, batch_log_det = _run(layer, direction, inputs, context, record)
        for i in range(min(samples, x.shape[0])):
            if any(draw.shape[0] != inputs.shape[0] for draw in record.draws):
                raise _fail(check, f"noise draws {[tuple(d.shape) for d in record.draws]} do not start with the "
                                   f"batch dimension {inputs.shape[0]}")
            replay = noise.Replay([draw[i:i + 1] for draw in record.draws])
            out, log_det = _run(layer, direction, inputs[i:i + 1], _slice(context, i), replay)
            worst = max(worst, _assert_close(check, f"sample {i} alone vs in the batch: output", out,
                                             batch_out[i:i + 1], atol))
            _assert_close(check, f"sample {i} alone vs in the batch: log_det", log_det, batch_log_det[i:i + 1], atol)
    return worst


def _check_context_used(layer: Transform, x: Tensor, context: Tensor, atol: float) -> float:
    check = "context_used"
    if context.shape[0] < 2:
        raise _fail(check, "needs a batch of at least 2 contexts")
    z, log_det = _run(layer, "forward", x, context)
    z_other, log_det_other = _run(layer, "forward", x, context.roll(1, dims=0))
    change = max(_max_error(z, z_other), _max_error(log_det, log_det_other))
    if change <= atol:
        raise _fail(check, f"shuffling the contexts across the batch changed the output by only {change:.3g}; "
                           f"pass uses_context=False for layers that ignore the context")
    return change


def _check_noise(layer: Transform, x: Tensor, context: Tensor | None) -> None:
    """Recorded noise replays identically; seeded noise is reproducible; passes drawing none are deterministic."""
    z = _run(layer, "forward", x, context)[0]
    for direction, inputs in (("forward", x), ("inverse", z)):
        record = noise.Record(noise.GeneratorNoise(_seeded(3)))
        first = _run(layer, direction, inputs, context, record)
        if not record.draws:
            with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG state as it was
                torch.manual_seed(1)
                one = _run(layer, direction, inputs, context, noise.GlobalRNG())
                torch.manual_seed(2)
                two = _run(layer, direction, inputs, context, noise.GlobalRNG())
            _assert_equal(f"deterministic[{direction}]", "outputs of two passes drawing no nfkit_core.noise (global "
                                                         "seeds 1 and 2)", one[0], two[0])
            continue
        if layer.is_bijective:
            raise _fail(f"noise[{direction}]", f"a bijective layer drew {len(record.draws)} noise tensors")
        check = f"noise_replay[{direction}]"
        replay = noise.Replay(record.draws)
        second = _run(layer, direction, inputs, context, replay)
        _assert_equal(check, "outputs with replayed noise", second[0], first[0])
        _assert_equal(check, "log_dets with replayed noise", second[1], first[1])
        try:
            replay.check_exhausted()
        except ValueError as error:
            raise _fail(check, str(error)) from None
        check = f"noise_seeded[{direction}]"
        again = _run(layer, direction, inputs, context, 3)
        _assert_equal(check, "outputs from the same seed", again[0], first[0])
        other = _run(layer, direction, inputs, context, 4)
        if torch.equal(other[0], first[0]) and torch.equal(other[1], first[1]):
            raise _fail(check, "a different seed gave identical results: the noise drawn is not used")


def _check_gradients(check: str, module: nn.Module, loss: Tensor, allow_zero_grad: Collection[str],
                     require_nonzero: bool) -> None:
    trainable = {name: p for name, p in module.named_parameters() if p.requires_grad and name not in allow_zero_grad}
    if not trainable:
        return
    if not loss.requires_grad:
        raise _fail(check, f"the output does not depend on any of the parameters {sorted(trainable)}")
    module.zero_grad(set_to_none=True)
    loss.backward()
    for name, parameter in trainable.items():
        if parameter.grad is None:
            raise _fail(check, f"parameter {name!r} got no gradient (not connected to the output)")
        if not torch.isfinite(parameter.grad).all():
            raise _fail(check, f"parameter {name!r} has a NaN or infinite gradient")
        if require_nonzero and parameter.grad.abs().max() == 0:
            raise _fail(check, f"parameter {name!r} got an all-zero gradient")


def _check_train_eval(layer: Transform, x: Tensor, context: Tensor | None, atol: float, seed: int) -> float:
    """After the warm-up, eval mode gives what training mode gives (for layers without batch statistics)."""
    check = "train_eval_agreement"
    z_train, log_det_train = _run(layer.train(), "forward", x, context, seed)
    z_eval, log_det_eval = _run(layer.eval(), "forward", x, context, seed)
    error = _assert_close(check, "eval-mode output vs train-mode output", z_eval, z_train, atol)
    _assert_close(check, "eval-mode log_det vs train-mode log_det", log_det_eval, log_det_train, atol)
    return error


def _check_state_dict(layer: Transform, fresh: Transform, x: Tensor, context: Tensor | None, seed: int) -> None:
    """A fresh layer loaded with ``layer``'s state dict gives identical outputs in both modes and directions."""
    fresh.load_state_dict(layer.state_dict())
    for mode in ("train", "eval"):
        check = f"state_dict[{mode}]"
        layer.train(mode == "train")
        fresh.train(mode == "train")
        with torch.no_grad():
            z, log_det = _run(layer, "forward", x, context, seed)
            z_loaded, log_det_loaded = _run(fresh, "forward", x, context, seed)
            _assert_equal(check, "forward outputs of the original and the reloaded layer", z_loaded, z)
            _assert_equal(check, "forward log_dets of the original and the reloaded layer", log_det_loaded, log_det)
            back = _run(layer, "inverse", z, context, seed)[0]
            _assert_equal(check, "inverse outputs of the original and the reloaded layer",
                          _run(fresh, "inverse", z, context, seed)[0], back)


def _projection_loss(out: Tensor, log_det: Tensor, seed: int) -> Tensor:
    """A loss that depends on every output entry with random weights, so that gradients cannot cancel by symmetry."""
    weights = torch.randn(out.shape, generator=_seeded(seed)).to(out)
    return (weights * out).sum() + log_det.sum()


def check_transform(make_transform: Callable[[], Transform], x: Tensor, context: Tensor | None = None, *,
                    atol: float = 1e-5, jacobian_tol: float = 1e-6, jacobian_samples: int = 2,
                    independence_samples: int = 2, batch_statistics: bool = False, uses_context: bool = True,
                    perturb: float = 0.1, allow_zero_grad: Collection[str] = (), seed: int = 0) -> dict[str, float]:
    """Run the conformance checks on a layer and return the measured errors.

    Checks: output and log-det shapes; fp32 round trip (bijections: ``inverse(forward(x)) == x`` and inverse log-det
    ``== -`` forward log-det; stochastic layers: the left-inverse ``inverse(forward(x)) == x`` when the forward draws
    noise, else the right-inverse ``forward(inverse(z)) == z``); forward log-det against
    ``slogdet(torch.autograd.functional.jacobian)`` in float64 on the first ``jacobian_samples`` samples (bijections);
    per-sample independence in both directions (a sample alone, with its own context and its slice of the noise,
    gives its row of the batch result); that the context changes the output when given; eval/train agreement; noise
    replay, seeding and determinism; non-zero finite gradients for every parameter through forward (and inverse for
    bijections); identical outputs after a ``state_dict`` round trip into a fresh ``make_transform()``.

    Args:
        make_transform: builds a fresh layer (called twice: the state-dict check loads into the second one).
        x: a small float32 input batch (at least 2 samples); for dequantizers, integer levels.
        context: optional context batch.
        atol: tolerance of the fp32 comparisons (relative to ``1 + |value|``).
        jacobian_tol: tolerance of the float64 log-det check.
        jacobian_samples: how many samples get the Jacobian check (each costs one Jacobian of size ``D x D``).
        independence_samples: how many samples are compared alone against the batch.
        batch_statistics: the layer normalises with batch statistics in training mode (BatchNorm): the training-mode
            round trip and the eval/train agreement are skipped.
        uses_context: with a context, require that shuffling it across the batch changes the output.
        perturb: scale of the Gaussian noise added to every parameter before checking (0 to keep them as built).
        allow_zero_grad: names of parameters that may get no or zero gradient.
        seed: seed of the perturbation and the noise.

    Returns:
        the largest error each check measured, by name (``"roundtrip"``, ``"log_det_vs_jacobian"``, ...).

    Raises:
        AssertionError: a check failed; the message names the check and the numbers.
        ValueError: a batch of fewer than 2 samples.

    Example:
        >>> import torch
        >>> from nfkit_core.layers import ActNorm
        >>> errors = check_transform(lambda: ActNorm(3), torch.randn(4, 3, 2, 2))
        >>> errors["roundtrip"] < 1e-5 and errors["log_det_vs_jacobian"] < 1e-6
        True

        A layer whose log-det is wrong fails, naming the check:

        >>> class HalvedLogDet(ActNorm):
        ...     def forward(self, x, context=None):
        ...         z, log_det = super().forward(x, context)
        ...         return z, log_det / 2
        >>> check_transform(lambda: HalvedLogDet(3), torch.randn(4, 3, 2, 2))
        Traceback (most recent call last):
        ...
        AssertionError: roundtrip[train]: ...
    """
    if x.shape[0] < 2:
        raise ValueError("check_transform needs a batch of at least 2 samples")
    errors: dict[str, float] = {}
    layer = make_transform()
    if not (isinstance(layer, nn.Module) and isinstance(layer, Bijector)):
        raise _fail("bijector_protocol", f"{type(layer).__name__} is not a torch.nn.Module with is_bijective, forward "
                                         f"and inverse (subclass nfkit_core.Transform)")
    layer.train()
    with _checking("forward_outputs"):  # data-dependent initialisation
        _check_outputs("forward_outputs", x, _run(layer, "forward", x, context, seed))
    if perturb:
        _perturb(layer, perturb, seed)
    with _checking("noise"):
        _check_noise(layer.eval(), x, context)
        forward_draws = bool(_draws(layer, "forward", x, context))

    if not batch_statistics:
        with _checking("roundtrip[train]"):
            errors["roundtrip_train"] = _check_roundtrip(layer.train(), x, context, atol, "train", forward_draws)
        with _checking("train_eval_agreement"):
            errors["train_eval"] = _check_train_eval(layer, x, context, atol, seed)
    layer.eval()
    with _checking("roundtrip[eval]"):
        errors["roundtrip"] = _check_roundtrip(layer, x, context, atol, "eval", forward_draws)
    if layer.is_bijective:
        with _checking("log_det_vs_jacobian"):
            errors["log_det_vs_jacobian"] = _check_jacobian(layer, x, context, jacobian_samples, jacobian_tol)
    with _checking("per_sample_independence"):
        errors["per_sample_independence"] = _check_independence(layer, x, context, atol, independence_samples)
    if context is not None and uses_context:
        with _checking("context_used"):
            errors["context_change"] = _check_context_used(layer, x, context, atol)

    layer.train()
    with _checking("gradients[forward]"):
        out, log_det = _run(layer, "forward", x, context, seed)
        _check_gradients("gradients[forward]", layer, _projection_loss(out, log_det, seed), allow_zero_grad,
                         require_nonzero=bool(perturb))
    if layer.is_bijective:
        with _checking("gradients[inverse]"):
            back, inverse_log_det = _run(layer, "inverse", out.detach(), context, seed)
            _check_gradients("gradients[inverse]", layer, _projection_loss(back, inverse_log_det, seed + 1),
                             allow_zero_grad, require_nonzero=bool(perturb))
    with _checking("state_dict"):
        _check_state_dict(layer, make_transform(), x, context, seed)
    return errors


def check_flow(flow: Flow, x: Tensor, context: Tensor | None = None, *, atol: float = 1e-5, num_samples: int = 2,
               allow_zero_grad: Collection[str] = (), perturb: float = 0.01, jacobian_tol: float = 1e-6,
               jacobian_max_dims: int = 1024, seed: int = 0) -> dict[str, float]:
    """Run the conformance checks on a flow (a deep copy of it) and return the measured errors.

    Checks: the flow is a :class:`torch.nn.Module` satisfying the :class:`nfkit_core.Flow` protocol; ``log_prob`` has
    shape ``(batch,)`` and is finite; :meth:`~nfkit_core.NormalizingFlow.log_prob_terms` add up to it;
    ``bits_per_dim == -log_prob / (D ln 2)``; :meth:`~nfkit_core.NormalizingFlow.transform_to_latent` has the prior's
    event shape and the prior scores it as in the terms; :meth:`~nfkit_core.NormalizingFlow.intermediates` returns
    every named step, the last one being the latent; samples have the data shape, are finite, reproducible with a
    seeded generator and differ between seeds; for bijective flows without dequantizer
    ``latent_to_data(transform_to_latent(x)) == x``; after a parameter perturbation every parameter gets a finite,
    non-zero gradient from ``-log_prob``.

    The transform itself is checked as :func:`check_transform` checks a layer, on the (dequantized) data: its
    largest bijective parts (the whole transform, or the bijective steps between splits and augmentations) invert
    their forward pass with the opposite log-det, and their forward log-det equals ``log |det J|`` of the autograd
    Jacobian in float64 (on the first sample, for parts of at most ``jacobian_max_dims`` dimensions). So a halved
    log-det or a wrong inverse inside a flow fails here as well (stochastic layers themselves are
    :func:`check_transform`'s business).

    Args:
        flow: the flow; it is deep-copied, warmed up with one training-mode pass on ``x`` (data-dependent
            initialisation) and checked in eval mode.
        x: a small data batch (what the trainer feeds: integer levels for flows with a dequantizer).
        context: optional context batch (e.g. class labels); with one, ``num_samples`` is its batch size.
        atol: tolerance of the comparisons (relative to ``1 + |value|``).
        num_samples: samples to draw when there is no context.
        allow_zero_grad: names of parameters that may get no or zero gradient.
        perturb: scale of the parameter perturbation before the gradient check (0 to skip it).
        jacobian_tol: tolerance of the float64 log-det check.
        jacobian_max_dims: the largest per-sample size of a part whose Jacobian is computed.
        seed: seed of the noise and the perturbation.

    Returns:
        the largest error each check measured, by name.

    Raises:
        AssertionError: a check failed; the message names the check and the numbers.
    """
    if not (isinstance(flow, nn.Module) and isinstance(flow, Flow)):
        missing = [name for name in Flow.__protocol_attrs__ if not hasattr(flow, name)] \
            if hasattr(Flow, "__protocol_attrs__") else []
        raise _fail("flow_protocol", f"{type(flow).__name__} is not a torch.nn.Module satisfying nfkit_core.Flow"
                                     + (f" (missing {missing})" if missing else "")
                                     + "; build flows as nfkit_core.NormalizingFlow")
    flow = copy.deepcopy(flow)
    errors: dict[str, float] = {}
    flow.train()
    with _checking("log_prob"):
        flow.log_prob(x, context, noise=_seeded(seed))
    flow.eval()
    batch = x.shape[0]
    with torch.no_grad():
        with _checking("log_prob"):
            log_prob = flow.log_prob(x, context, noise=_seeded(seed))
        if tuple(log_prob.shape) != (batch,) or not torch.isfinite(log_prob).all():
            raise _fail("log_prob", f"expected finite values of shape ({batch},), got shape {tuple(log_prob.shape)} "
                                    f"with {int((~torch.isfinite(log_prob)).sum())} non-finite")
        with _checking("log_prob_terms"):
            terms = flow.log_prob_terms(x, context, noise=_seeded(seed))
        for name in ("prior", "log_det", "dequantization"):
            if tuple(getattr(terms, name).shape) != (batch,):
                raise _fail("log_prob_terms", f"term {name} has shape {tuple(getattr(terms, name).shape)}")
        errors["terms"] = _assert_close("log_prob_terms", "prior + log_det + dequantization vs log_prob",
                                        terms.total, log_prob, atol)
        expected_bpd = -log_prob / (flow.num_dims * math.log(2.0))
        with _checking("bits_per_dim"):
            errors["bits_per_dim"] = _assert_close("bits_per_dim", "bits_per_dim vs -log_prob / (D ln 2)",
                                                   flow.bits_per_dim(x, context, noise=_seeded(seed)), expected_bpd,
                                                   atol)

        with _checking("transform_to_latent"):
            z = flow.transform_to_latent(x, context, noise=_seeded(seed))
        if tuple(z.shape) != (batch, *flow.prior.event_shape):
            raise _fail("transform_to_latent", f"latent shape {tuple(z.shape)} is not (batch, *prior.event_shape) = "
                                               f"{(batch, *flow.prior.event_shape)}")
        errors["latent_prior"] = _assert_close("transform_to_latent", "prior.log_prob(latent) vs the prior term",
                                               flow.prior.log_prob(z, context), terms.prior, atol)
        if isinstance(flow.transform, Sequential):
            with _checking("intermediates"):
                outputs = flow.intermediates(x, context, noise=_seeded(seed))
            if list(outputs) != flow.transform.names():
                raise _fail("intermediates", f"got steps {list(outputs)}, expected {flow.transform.names()}")
            for name, value in outputs.items():
                if value.shape[0] != batch or not torch.isfinite(value).all():
                    raise _fail("intermediates", f"step {name!r}: shape {tuple(value.shape)}, finite: "
                                                 f"{bool(torch.isfinite(value).all())}")
            _assert_close("intermediates", "last step vs transform_to_latent", list(outputs.values())[-1], z, atol)

        n = context.shape[0] if context is not None else num_samples
        with _checking("sample"):
            samples = flow.sample(n, context, generator=_seeded(seed))
            again = flow.sample(n, context, generator=_seeded(seed))
            other = flow.sample(n, context, generator=_seeded(seed + 1))
        if tuple(samples.shape) != (n, *flow.data_shape) or not torch.isfinite(samples).all():
            raise _fail("sample", f"expected finite samples of shape {(n, *flow.data_shape)}, got shape "
                                  f"{tuple(samples.shape)}")
        _assert_equal("sample", "samples from the same seeded generator", again, samples)
        if torch.equal(other, samples):
            raise _fail("sample", "two different seeds gave identical samples")
        if flow.dequantizer is None and flow.transform.is_bijective:
            with _checking("latent_roundtrip"):
                back = flow.latent_to_data(z, context)
            errors["latent_roundtrip"] = _assert_close("latent_roundtrip", "latent_to_data(transform_to_latent(x)) vs "
                                                       "x", back, x, atol)
        with _checking("transform_inverse"):
            with noise.use(_seeded(seed)):
                y = flow.dequantizer(x, context)[0] if flow.dequantizer is not None else x
    errors.update(_check_flow_transform(flow.transform, y, context, atol, jacobian_tol, jacobian_max_dims))

    flow.train()
    if perturb:
        _perturb(flow, perturb, seed)
    with _checking("gradients"):
        loss = -flow.log_prob(x, context, noise=_seeded(seed)).mean()
        _check_gradients("gradients", flow, loss, allow_zero_grad, require_nonzero=bool(perturb))
    return errors


def _check_flow_transform(transform: Transform, y: Tensor, context: Tensor | None, atol: float, jacobian_tol: float,
                          max_dims: int) -> dict[str, float]:
    """The inverse and the log-det of a flow's transform (in eval mode) on the data ``y`` it receives."""
    errors = {"transform_inverse": 0.0}
    with _checking("transform_inverse"):
        parts = _bijective_parts(transform, y, context)
    for path, part, inputs in parts:
        with _checking(f"transform_inverse[{path}]"):
            error = _check_roundtrip(part, inputs, context, atol, f"transform:{path}", forward_draws=False)
        errors["transform_inverse"] = max(errors["transform_inverse"], error)
        if inputs[0].numel() <= max_dims:
            check = f"log_det_vs_jacobian[{path}]"
            with _checking(check):
                error = _check_jacobian(part, inputs, context, 1, jacobian_tol, check)
            errors["log_det_vs_jacobian"] = max(errors.get("log_det_vs_jacobian", 0.0), error)
    return errors
