"""The judges' classifier: L2-regularised (multinomial) logistic regression with balanced class weights.

The linear probe of Razavian et al. ("CNN Features off-the-shelf: an Astounding Baseline for Recognition",
CVPR-W 2014) on frozen embeddings; the judges (:mod:`sfumato.judges.style`, :mod:`~sfumato.judges.crop`,
:mod:`~sfumato.judges.gram`) fit it on standardised feature rows. The objective is the textbook one:

    minimise over W, b:   sum_i w_i * CE(softmax(W x_i + b), y_i) / sum_i w_i  +  ||W||^2 / (2 C sum_i w_i)

with one weight row per class (one row and the logistic loss when there are two classes), the intercepts
``b`` unpenalised, and balanced class weights ``w_i = n / (k * n_{y_i})`` (n rows, k classes). That is the
objective scikit-learn's ``LogisticRegression(C=C, class_weight="balanced")`` minimises with its default
L-BFGS solver, and it is solved here the same way (scipy's L-BFGS-B from zeros, the same stopping rule:
largest gradient entry <= ``tol`` or a relative decrease below 64 machine epsilons, at most ``max_iter``
iterations, up to 50 line-search steps), so the judges keep the values they had when scikit-learn fitted
them (checked in ``tests/test_judges.py`` against scikit-learn where it is installed). Written here, in
numpy, because importing scikit-learn cost a first run about a second (and 1.5 s without torch loaded),
more than the fit itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LogisticFit", "fit_balanced_logistic", "preload_solver"]


class LogisticFit(dict):
    """``classes`` (sorted labels), ``coef`` ``[rows, d]`` and ``intercept`` ``[rows]`` (one row for two
    classes: the logit of the second), plus ``n_iter`` and ``converged``."""


def preload_solver() -> None:
    """Import the solver (scipy.optimize, about 0.3-0.6 s) on a background thread, so that a caller that
    embeds its training images first does not wait for it later. Safe to call more than once: Python's
    import lock makes a later ``import`` wait for this one to finish."""
    import sys
    import threading

    if "scipy.optimize" not in sys.modules:
        threading.Thread(target=_import_solver, name="sfumato-import-scipy", daemon=True).start()


def _import_solver() -> None:
    import importlib

    try:
        importlib.import_module("scipy.optimize")
    except ImportError:  # reported where the fit imports it
        pass


def _balanced_weights(y: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return (len(y) / (k * counts))[y]


def fit_balanced_logistic(X: np.ndarray, labels: Sequence[Any], *, C: float, tol: float = 1e-4,
                          max_iter: int = 5000) -> LogisticFit:
    """Fit on rows ``X`` ``[n, d]`` (float64) with one label per row; see the module doc."""
    from scipy.optimize import minimize

    X = np.ascontiguousarray(X, dtype=np.float64)
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    k = len(classes)
    if k < 2:
        raise ValueError(f"logistic regression needs at least 2 classes, got {k}")
    n, d = X.shape
    sw = _balanced_weights(y, k)
    sw_sum = float(sw.sum())
    sw_n = sw / sw_sum
    l2 = 1.0 / (C * sw_sum)

    if k == 2:
        t = (y == 1).astype(np.float64)

        def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            coef, b = w[:d], w[d]
            z = X @ coef + b
            # log(1 + e^z) - t z, stable for both signs of z
            point = np.logaddexp(0.0, z) - t * z
            g = (0.5 * (1.0 + np.tanh(0.5 * z)) - t) * sw_n  # sigmoid(z) - t
            grad = np.empty_like(w)
            grad[:d] = X.T @ g + l2 * coef
            grad[d] = g.sum()
            return float(point @ sw_n) + 0.5 * l2 * float(coef @ coef), grad

        w0 = np.zeros(d + 1)
    else:
        onehot = np.zeros((n, k))
        onehot[np.arange(n), y] = 1.0

        def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            W = w.reshape((k, d + 1), order="F")  # class-contiguous, the layout scikit-learn optimises
            coef, b = W[:, :d], W[:, d]
            z = X @ coef.T + b
            zmax = z.max(axis=1, keepdims=True)
            e = np.exp(z - zmax)
            s = e.sum(axis=1, keepdims=True)
            lse = np.log(s)[:, 0] + zmax[:, 0]
            point = lse - z[np.arange(n), y]
            g = (e / s - onehot) * sw_n[:, None]
            grad = np.empty((k, d + 1))
            grad[:, :d] = g.T @ X + l2 * coef
            grad[:, d] = g.sum(axis=0)
            return float(point @ sw_n) + 0.5 * l2 * float(np.sum(coef * coef)), grad.ravel(order="F")

        w0 = np.zeros(k * (d + 1))

    res = minimize(loss_grad, w0, method="L-BFGS-B", jac=True,
                   options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps})
    W = res.x.reshape((1, d + 1)) if k == 2 else res.x.reshape((k, d + 1), order="F")
    return LogisticFit(classes=[c.item() if hasattr(c, "item") else c for c in classes],
                       coef=np.ascontiguousarray(W[:, :d]), intercept=W[:, d].copy(),
                       n_iter=int(res.nit), converged=bool(res.success))
