"""Multinomial logistic regression in numpy, small enough to train on a subset on the driver.

The model standardises the features with the training rows' mean and standard deviation, then
minimises the (optionally weighted) mean cross-entropy plus ``l2 / 2 * ||W||^2`` (the intercepts are
not penalised) with a fixed number of accelerated full-batch gradient steps of size 1 / L, L a
bound on the gradient's Lipschitz constant. Imports neither Spark nor pyspark.ml, so executors that
predict with it load it quickly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_L2 = 1e-2
DEFAULT_ITERATIONS = 300


@dataclass(frozen=True)
class LinearClassifier:
    """Class scores ``x @ coef + intercept`` on raw features (the standardisation folded in)."""

    coef: np.ndarray  # (d, classes)
    intercept: np.ndarray  # (classes,)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The index of the highest-scoring class of each row."""
        return np.argmax(features @ self.coef + self.intercept, axis=1)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    sample_weight: np.ndarray | None = None,
    l2: float = DEFAULT_L2,
    iterations: int = DEFAULT_ITERATIONS,
) -> LinearClassifier:
    """L2-regularised multinomial logistic regression.

    Parameters
    ----------
    features : (n, d) array of training rows.
    labels : (n,) array of class indices in [0, n_classes).
    n_classes : number of classes; classes without a training row get low scores.
    sample_weight : (n,) non-negative weights, or None for equal weights; only their ratios matter.
    l2 : strength of the penalty on the coefficients of the standardised features.
    iterations : accelerated gradient steps.

    Returns
    -------
    LinearClassifier predicting on unstandardised features.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"expected n > 0 rows of features and n labels, got {x.shape} and {y.shape}")
    w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("sample weights must be finite, non-negative and not all zero")
    w = w / w.sum()
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays 0 after centring
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    onehot = np.zeros((len(x), n_classes))
    onehot[np.arange(len(x)), y] = 1.0
    penalty = np.full((z.shape[1], 1), l2)
    penalty[-1] = 0.0
    # The cross-entropy's Hessian is at most 1/2 * Z^T diag(w) Z in each class block.
    lipschitz = 0.5 * np.linalg.eigvalsh(z.T @ (w[:, None] * z))[-1] + l2
    step = 1.0 / lipschitz
    theta = np.zeros((z.shape[1], n_classes))
    previous, momentum = theta, 1.0
    for _ in range(iterations):
        gradient = z.T @ (w[:, None] * (_softmax(z @ theta) - onehot)) + penalty * theta
        updated = theta - step * gradient
        next_momentum = (1.0 + np.sqrt(1.0 + 4.0 * momentum**2)) / 2.0
        theta = updated + ((momentum - 1.0) / next_momentum) * (updated - previous)
        previous, momentum = updated, next_momentum
    coef = previous[:-1] / std[:, None]
    return LinearClassifier(coef, previous[-1] - mean @ coef)
