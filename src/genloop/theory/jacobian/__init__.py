"""The exact local rate of iterative retraining and the paper's Theorem 1/2 quantities.

Retraining map (paper, Section 3; docs/theory.md), for a density model p_θ with data p_data:

    G_λ(θ') = argmax_θ  E_{p_data}[log p_θ(x)] + λ E_{x~p_θ'}[log p_θ(x)].

θ* = argmax_θ E_data[log p_θ] is a fixed point. With A = -E_data[∇²_θ log p_θ*(x)] and
B = -E_{p_θ*}[∇²_θ log p_θ*(x)] (the Fisher information of p_θ*), the implicit function theorem
applied to ∇_θ[E_data log p_θ + λ E_{p_θ'} log p_θ] = 0 gives (differentiating the synthetic
term in θ' uses ∇_θ' E_{p_θ'}[∇_θ log p_θ]|_{θ=θ'} = E_{p_θ'}[s s^T] = B)

    J(λ) = dG_λ/dθ'(θ*) = λ (A + λB)^{-1} B,

whose eigenvalues are λκ/(1+λκ) for the generalised eigenvalues κ of B v = κ A v. When A ≻ 0 the
spectral radius λκ_max/(1+λκ_max) is < 1 for *every* finite λ: the paper's Theorem 1 condition
λ(1 + Lε/α) < 1/2 (α = λ_min(A), L a Lipschitz constant in x of ∇²_θ log p_θ(x), ε =
W₁(p_θ*, p_data)), with its rate ρ(λ) = λ(α+εL)/(α - λ(α+εL)), is a sufficient, conservative
bound. The spectral radius is invariant under reparametrisation (J changes by a similarity);
α, L and therefore the paper's bound are not.

Models enter through :class:`ParametricDensity`: θ is a flat float64 torch vector,
``log_prob(x, θ)`` is differentiable in θ, ``fit`` is (weighted) maximum likelihood and
``sample`` draws with an explicit numpy ``rng``. Adapters: :class:`GaussianDensity`
(mean + log-Cholesky), :class:`StudentTDensity` (1-D, loc, log-scale, optional log-dof),
:class:`GMMDensity`, :class:`TorchModuleDensity`.

Layout: one module per adapter (``gaussian``, ``gmm``, ``torch_module``; the protocol and the
Student-t, which the ``student_t`` model fits with, live in :mod:`genloop.models._parametric`)
and the estimators in ``estimators``; every name is importable from here as before.
"""


from __future__ import annotations

from genloop.models._parametric import (  # noqa: F401 - re-exported
    ParametricDensity,
    StudentTDensity,
    Tensor,
    _check_weights,
    _check_x,
    _newton_maximize,
    _t,
    expected_neg_hessian,
    per_sample_hessians,
    per_sample_scores,
)
from genloop.theory.jacobian.estimators import (  # noqa: F401 - re-exported
    StabilityAnalysis,
    _check_AB,
    analyze,
    bootstrap_constants,
    estimate_free_condition,
    estimate_lipschitz,
    estimate_w1,
    generalized_eigenvalues,
    jacobian_eigenvalues,
    linearized_stationary_covariance,
    paper_condition,
    paper_rate,
    retraining_jacobian,
    retraining_map,
    spectral_radius,
    theorem2_radius,
    transient_amplification,
)
from genloop.theory.jacobian.gaussian import GaussianDensity
from genloop.theory.jacobian.gmm import GMMDensity
from genloop.theory.jacobian.torch_module import TorchModuleDensity, _Apply  # noqa: F401 - re-exported

__all__ = [
    "GMMDensity",
    "GaussianDensity",
    "ParametricDensity",
    "StabilityAnalysis",
    "StudentTDensity",
    "TorchModuleDensity",
    "analyze",
    "bootstrap_constants",
    "estimate_free_condition",
    "estimate_lipschitz",
    "estimate_w1",
    "expected_neg_hessian",
    "generalized_eigenvalues",
    "jacobian_eigenvalues",
    "linearized_stationary_covariance",
    "paper_condition",
    "paper_rate",
    "per_sample_hessians",
    "per_sample_scores",
    "retraining_jacobian",
    "retraining_map",
    "spectral_radius",
    "theorem2_radius",
    "transient_amplification",
]
