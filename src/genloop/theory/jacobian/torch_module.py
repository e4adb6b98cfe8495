"""Any torch module with a log-density as a :class:`ParametricDensity` (θ = its flattened parameters)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from genloop.errors import ConfigError
from genloop.models._parametric import (
    ParametricDensity,
    Tensor,
    _check_weights,
    _check_x,
    _newton_maximize,
    _t,
)

log = logging.getLogger(__name__)


class _Apply(torch.nn.Module):
    """Runs ``fn(inner, *args)`` as its forward, so functional_call covers all of ``fn``."""

    def __init__(self, inner: torch.nn.Module, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.inner = inner
        self.fn = fn

    def forward(self, *args: object) -> Tensor:
        return self.fn(self.inner, *args)


class TorchModuleDensity(ParametricDensity):
    """Any ``torch.nn.Module`` with a log-density; θ = its parameters, flattened.

    ``log_prob_fn(module, x)`` returns log p(x) of shape (n,) and ``sample_fn(module, n,
    generator)`` n samples (a ``torch.Generator`` seeded from the numpy ``rng``); both run
    entirely inside ``torch.func.functional_call`` with the module's parameters replaced by θ,
    so θ is differentiable even for modules that build lazy objects (zuko flows). :meth:`from_zuko_flow` builds both for a zuko flow (sampling by inverting
    the flow's transform on base noise drawn with the generator).

    ``fit`` maximises Σ w log p_θ - (ridge/2)|θ|² by full-batch L-BFGS from the module's
    initial parameters (or ``init``), then damped Newton when θ has at most ``newton_max``
    entries. Over-parametrised networks have flat directions (A singular): a positive
    ``ridge`` r makes A + r·I positive definite. The retraining objective is then
    E_data[log p_θ] + λ E_{p_θ'}[log p_θ] - (r/2)|θ|² (weight decay scaled to the real data, so
    the fixed point θ* = argmax E_data[log p_θ] - (r/2)|θ|² does not depend on λ), and
    J = λ(A + r·I + λB)^{-1}B is its exact Jacobian (:func:`analyze` adds r·I to A). Use smooth
    activations (tanh, not ReLU): the Hessian of a piecewise-linear network ignores its kinks.
    The module is copied and cast to float64; the caller's module is not touched.
    """

    name = "torch_module"
    exponential_family = False

    def __init__(
        self,
        module: torch.nn.Module,
        log_prob_fn: Callable[[torch.nn.Module, Tensor], Tensor],
        sample_fn: Callable[[torch.nn.Module, int, torch.Generator], Tensor],
        d: int,
        *,
        ridge: float = 0.0,
        lbfgs_steps: int = 500,
        newton_max: int = 300,
    ) -> None:
        import copy

        if not math.isfinite(ridge) or ridge < 0:
            raise ConfigError(f"ridge must be a finite number >= 0, got {ridge!r}")
        self.module = copy.deepcopy(module).to(torch.float64)
        self.log_prob_fn = log_prob_fn
        self.sample_fn = sample_fn
        self._lp = _Apply(self.module, log_prob_fn)
        self._draw = _Apply(self.module, sample_fn)
        self.d = int(d)
        self.ridge = float(ridge)
        self.lbfgs_steps = int(lbfgs_steps)
        self.newton_max = int(newton_max)
        named = [(k, v) for k, v in self.module.named_parameters() if v.requires_grad]
        self._names = [k for k, _ in named]
        self._shapes = [v.shape for _, v in named]
        self._sizes = [v.numel() for _, v in named]
        self.theta_init = torch.cat([v.detach().reshape(-1) for _, v in named]).clone()

    @classmethod
    def from_zuko_flow(cls, flow: torch.nn.Module, d: int, **options: object) -> TorchModuleDensity:
        """Adapter for an unconditional zuko flow (``flow()`` is the distribution)."""

        def log_prob_fn(module: torch.nn.Module, x: Tensor) -> Tensor:
            return module().log_prob(x)

        def sample_fn(module: torch.nn.Module, n: int, gen: torch.Generator) -> Tensor:
            dist = module()
            z = torch.randn(n, d, generator=gen, dtype=torch.float64)
            z = dist.base.mean + dist.base.stddev * z  # type: ignore[attr-defined]
            return dist.transform.inv(z)  # type: ignore[attr-defined]

        return cls(flow, log_prob_fn, sample_fn, d, **options)  # type: ignore[arg-type]

    @property
    def n_params(self) -> int:
        return int(sum(self._sizes))

    def param_names(self) -> list[str]:
        return [f"{nm}[{i}]" for nm, size in zip(self._names, self._sizes) for i in range(size)]

    def _params(self, theta: Tensor) -> dict[str, Tensor]:
        parts = torch.split(theta, self._sizes)
        return {f"inner.{nm}": p.reshape(shape) for nm, p, shape in zip(self._names, parts, self._shapes)}

    def log_prob(self, x: Tensor, theta: Tensor) -> Tensor:
        return torch.func.functional_call(self._lp, self._params(theta), (x,))

    def sample(self, theta: Tensor, n: int, rng: np.random.Generator) -> np.ndarray:
        from genloop.rng import torch_seed

        gen = torch.Generator().manual_seed(torch_seed(rng))
        with torch.no_grad():
            out = torch.func.functional_call(self._draw, self._params(theta.detach()), (int(n), gen))
        return out.detach().numpy().reshape(int(n), self.d)

    def init_theta(self, x: np.ndarray, weights: np.ndarray) -> Tensor:
        return self.theta_init.clone()

    def fit(
        self, x: np.ndarray, weights: np.ndarray | None = None, *, init: Tensor | None = None, ridge: float | None = None
    ) -> Tensor:
        x = _check_x(x, self.d)
        w = _check_weights(weights, x.shape[0])
        xt, wt = _t(x), _t(w)
        r = self.ridge if ridge is None else float(ridge)

        def objective(th: Tensor) -> Tensor:
            return (wt * self.log_prob(xt, th)).sum() - 0.5 * r * (th * th).sum()

        theta = (self.theta_init if init is None else init).detach().clone().to(torch.float64).requires_grad_(True)
        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=self.lbfgs_steps, tolerance_grad=1e-10,
                                tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = -objective(theta)
            loss.backward()
            return loss

        opt.step(closure)
        theta = theta.detach()
        if self.n_params <= self.newton_max:
            theta = _newton_maximize(objective, theta, tol=1e-10, max_iter=50)
        return theta
