"""A 1-D Student-t location-scale family fitted by exact maximum likelihood.

p_θ(x) = t_ν((x − loc)/scale)/scale with θ = (loc, log scale) and, when ``learn_dof``, log ν.
It is not an exponential family, so a misspecified fit (e.g. to a two-mode mixture) has
A = −E_data[∇²log p_θ*] ≠ B (the Fisher information): the case where the exact local rate of
retraining λκ_max/(1+λκ_max) differs from λ/(1+λ) (docs/theory.md §3).

``fit`` maximises the likelihood to convergence (damped Newton on θ, the maximiser
:class:`genloop.models._parametric.StudentTDensity` uses), so the learner run by the loop *is* the
map G_λ the theory describes: ``genloop theory`` predicts this family without approximation of
the learning procedure.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats
from typing_extensions import Self

from genloop.errors import ConfigError, DataError
from genloop.models import register_model
from genloop.models._vectors import check_count, check_vectors
from genloop.models.base import GenerativeModel


@register_model("student_t")
class StudentTModel(GenerativeModel):
    """1-D Student-t t_ν(loc, scale) fitted by maximum likelihood (damped Newton, to ~1e-11).

    Args:
        dof: degrees of freedom ν > 0 (the starting value when ``learn_dof``).
        learn_dof: also fit ν (as log ν) instead of keeping it fixed.

    Warm start: with ``init`` (a fitted :class:`StudentTModel`) Newton starts from init's
    parameters (the optimum is the same; only the number of steps changes). Fitted
    attributes: ``loc_``, ``scale_``, ``dof_`` (floats).
    """

    has_log_prob = True

    loc_: float
    scale_: float
    dof_: float

    def __init__(self, dof: float = 5.0, learn_dof: bool = False) -> None:
        if isinstance(dof, bool) or not isinstance(dof, (int, float)) or not math.isfinite(dof) or dof <= 0:
            raise ConfigError(f"dof must be a finite number > 0, got {dof!r}")
        if not isinstance(learn_dof, bool):
            raise ConfigError(f"learn_dof must be true or false, got {learn_dof!r}")
        self.dof = float(dof)
        self.learn_dof = learn_dof

    def _density(self) -> Any:
        from genloop.models._parametric import StudentTDensity

        return StudentTDensity(dof=self.dof, learn_dof=self.learn_dof)

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: GenerativeModel | None = None) -> Self:
        """Maximum likelihood on ``X`` of shape (n, 1); ``rng`` is unused (deterministic fit)."""
        import torch

        X = check_vectors(X, name="X", min_samples=2)
        if X.shape[1] != 1:
            raise DataError(f"student_t is a 1-D model, X has {X.shape[1]} features")
        if float(np.ptp(X[:, 0])) == 0.0:
            raise DataError("student_t cannot be fitted to constant data (the scale would be 0)")
        density = self._density()
        start = None
        if init is not None:
            if not isinstance(init, StudentTModel) or not init.is_fitted or init.learn_dof != self.learn_dof:
                raise ConfigError(f"a student_t model can only be warm-started from a fitted student_t with the "
                                  f"same learn_dof, got {init!r}")
            vals = [init.loc_, math.log(init.scale_)] + ([math.log(init.dof_)] if self.learn_dof else [])
            start = torch.tensor(vals, dtype=torch.float64)
        theta = density.fit(X, init=start).numpy()
        if not np.all(np.isfinite(theta)):
            raise DataError("the Student-t maximum-likelihood fit diverged (non-finite parameters)")
        dof = float(np.exp(theta[2])) if self.learn_dof else self.dof
        self._set_fitted(float(theta[0]), float(np.exp(theta[1])), dof)
        return self

    def _set_fitted(self, loc: float, scale: float, dof: float) -> None:
        if not (math.isfinite(loc) and scale > 0 and math.isfinite(scale) and dof > 0 and math.isfinite(dof)):
            raise DataError(f"bad Student-t parameters: loc={loc}, scale={scale}, dof={dof}")
        self.loc_, self.scale_, self.dof_ = float(loc), float(scale), float(dof)
        self.event_shape_ = (1,)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws loc + scale·T with T ~ t_ν (``rng.standard_t``), shape (n, 1)."""
        self._check_fitted()
        n = check_count(n)
        return (self.loc_ + self.scale_ * rng.standard_t(self.dof_, size=n))[:, None]

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Exact log-density of each row (``scipy.stats.t.logpdf``)."""
        self._check_fitted()
        X = check_vectors(X, name="X", n_features=1)
        return stats.t.logpdf(X[:, 0], self.dof_, loc=self.loc_, scale=self.scale_)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {"params": np.array([self.loc_, self.scale_, self.dof_], dtype=np.float64)}, {}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        params = np.asarray(arrays["params"], dtype=np.float64)
        if params.shape != (3,):
            raise DataError(f"bad Student-t state: params shape {params.shape}, expected (3,)")
        self._set_fitted(float(params[0]), float(params[1]), float(params[2]))
