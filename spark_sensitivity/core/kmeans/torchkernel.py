"""The nearest-center kernel on a torch device (a CUDA GPU), with the same arg-min as the numpy one.

:func:`localkmeans.nearest` decides every row exactly: a float32 product picks the winner, and rows
whose runner-up is within the product's rounding bound are settled by float64 distances. This module
runs the float32 product and the bound on the device and settles the few near-ties on the host with
the same function, so the assignment is the same as numpy's, row for row, not merely close. The
float32 products run in full float32 (TF32 off): the rounding bound assumes a 24-bit mantissa.

torch is imported only when a kernel is built; nothing here imports Spark.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from spark_sensitivity.core.kmeans import localkmeans
from spark_sensitivity.settings import SettingError
from spark_sensitivity.settings.choices import ACCELERATORS

# Rows per block of the (rows x k) score matrix on the device: 256 MiB of float32.
DEVICE_SCORE_ELEMENTS = 1 << 26

# Files present where an NVIDIA driver is loaded: 'auto' imports torch (seconds) only where one is.
_DRIVER_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version")


@functools.cache
def cuda_visible() -> bool:
    """Whether torch is installed and sees a CUDA device (checked once per process)."""
    if importlib.util.find_spec("torch") is None:
        return False
    if not any(os.path.exists(path) for path in _DRIVER_FILES):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_accelerator(accelerator: str) -> str:
    """'cuda' or 'cpu' for a setting of auto|cpu|cuda, in this process (a driver or an executor).

    'auto' is cuda where torch sees a GPU, else cpu; 'cuda' where none is visible is an error.
    """
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    if accelerator == "cpu":
        return "cpu"
    if cuda_visible():
        return "cuda"
    if accelerator == "cuda":
        raise SettingError(
            "accelerator 'cuda' was asked for, but torch is not installed or sees no CUDA device on "
            f"this host ({os.uname().nodename}); set accelerator to auto or cpu",
            "accelerator",
        )
    return "cpu"


def _torch() -> Any:
    import torch

    return torch


@contextlib.contextmanager
def _full_float32() -> Iterator[None]:
    """float32 matrix products without TF32 for the block, whatever the process had set."""
    torch = _torch()
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


class NearestKernel:
    """Fixed centers prepared on a device once; called with batches of points, it returns each
    point's nearest center (int32), the same arg-min as :func:`localkmeans.nearest`.

    As there, the product runs on data shifted to the centers' mean (the shift in float64), with the
    center norms added to the scores, and a row's winner is kept only when every other score is
    beyond the rounding bound; the other rows are settled on the host in float64.
    """

    def __init__(self, centers: np.ndarray, device: str = "cuda") -> None:
        torch = _torch()
        self.centers = np.asarray(centers, dtype=np.float64)
        self.device = torch.device(device)
        k, dim = self.centers.shape
        shift = self.centers.mean(axis=0)
        shifted = (self.centers - shift).astype(np.float32)
        norms = np.einsum("ij,ij->i", shifted, shifted, dtype=np.float64)
        self._shift = torch.from_numpy(shift).to(self.device)
        self._product = torch.from_numpy(np.ascontiguousarray(-2.0 * shifted.T)).to(self.device)
        self._norms = torch.from_numpy(norms.astype(np.float32)).to(self.device)
        self._reach = float(np.sqrt(norms.max()))
        self._slack = localkmeans.tie_slack(dim)
        self._step = max(1, DEVICE_SCORE_ELEMENTS // k)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Each row's nearest center; ``points`` is a host matrix (float32 or float64)."""
        torch = _torch()
        return self.on_device(torch.from_numpy(np.ascontiguousarray(points)).to(self.device), points)

    def on_device(self, rows: Any, points: np.ndarray) -> np.ndarray:
        """As :meth:`__call__`, for rows already on the device; ``points`` is their host copy, read
        only for the near-ties."""
        torch = _torch()
        index = np.empty(len(points), dtype=np.int32)
        with torch.no_grad(), _full_float32():
            for start in range(0, len(points), self._step):
                block = rows[start : start + self._step]
                local = (block.to(torch.float64) - self._shift).to(torch.float32)
                scores = torch.addmm(self._norms, local, self._product)
                best = scores.argmin(dim=1)
                index[start : start + len(block)] = best.cpu().numpy()
                if len(self.centers) > 1:
                    self._settle(local, scores, best, points[start : start + len(block)], index[start:])
        return index

    def _settle(self, local: Any, scores: Any, best: Any, points: np.ndarray, index: np.ndarray) -> None:
        """Rows whose runner-up scores within the rounding bound of the winner: settled exactly on
        the host, their indices written into ``index``."""
        torch = _torch()
        # Summed in float32 as numpy's kernel does, so an overflow flags the same rows.
        spread = local.square().sum(dim=1).to(torch.float64).sqrt()
        winner = scores.gather(1, best[:, None]).squeeze(1)
        threshold = (winner.to(torch.float64) + self._slack * (spread + self._reach) ** 2).to(torch.float32)
        scores.scatter_(1, best[:, None], float("inf"))
        near_tie = ~(scores.amin(dim=1) > threshold)  # also catches NaN scores (overflow)
        if not bool(near_tie.any()):
            return
        tied = near_tie.nonzero().squeeze(1)
        tied_scores = scores[tied].scatter_(1, best[tied][:, None], float("-inf"))
        rows = tied.cpu().numpy()
        index[rows] = localkmeans.settle_near_ties(
            points[rows], self.centers, tied_scores.cpu().numpy(), threshold[tied].cpu().numpy()
        )


def resident_assigner(x: np.ndarray, device: str = "cuda") -> localkmeans.Assigner:
    """A :data:`localkmeans.Assigner` for Lloyd's iterations over ``x`` with the rows uploaded to the
    device once; the per-cluster sums stay in numpy on the host, so the fit is the numpy one."""
    torch = _torch()
    rows = torch.from_numpy(np.ascontiguousarray(x)).to(torch.device(device))

    def assign(centers: np.ndarray) -> np.ndarray:
        return NearestKernel(centers, device).on_device(rows, x)

    return assign
