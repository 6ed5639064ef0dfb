"""The per-batch kernel of every assignment task: each row's nearest center and its cost, in numpy
or, where the accelerator setting and the host allow, on a GPU through torch.

Light on purpose: it imports neither Spark nor torch (until a GPU kernel is built), so a Python
worker that unpickles an assignment task loads it in milliseconds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from spark_sensitivity.core.kmeans import localkmeans, torchkernel

Nearest = Callable[[np.ndarray], np.ndarray]


def nearest_function(centers: np.ndarray, accelerator: str) -> Nearest:
    """points -> each point's nearest center among ``centers``, on the device ``accelerator``
    (auto|cpu|cuda) resolves to in this process. Either device gives the same arg-min."""
    if torchkernel.resolve_accelerator(accelerator) == "cuda":
        return torchkernel.NearestKernel(centers, "cuda")
    return functools.partial(localkmeans.nearest, centers=centers)


def nearest_centers(
    points: np.ndarray, centers: np.ndarray, z: int, nearest: Nearest | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index of each point's nearest center, and its cost ||x - c||^z.

    The arg-min is :func:`localkmeans.nearest`'s (or ``nearest``'s, the same on another device): a
    float32 product on data shifted to the centers' mean, near-ties decided in float64, so it is the
    exact arg-min whatever the offset of the data. The cost of the chosen center is computed in
    float64 on the host, so neither depends on the batching or the device.
    """
    assignment = localkmeans.nearest(points, centers) if nearest is None else nearest(points)
    cost = localkmeans.squared_distances(points, centers, assignment)
    return assignment, (np.sqrt(cost) if z == 1 else cost)
