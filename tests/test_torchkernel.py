"""The torch kernel (the GPU path) against the numpy one, run here on torch's CPU device: the same
arg-min row for row, near-ties and offsets included, and the same k-means fit.

On a machine with a GPU, ``python -m benchmarks.performance.gpu_kernel`` runs the same comparisons on the device.
"""

import numpy as np
import pytest

from spark_sensitivity.core.kmeans import kernels, localkmeans, torchkernel

pytest.importorskip("torch")


def _brute_force(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    distances = ((points[:, None, :].astype(np.float64) - centers[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_assignment_as_numpy_on_fresh_data(seed):
    rng = np.random.default_rng(seed)
    k, dim = int(rng.integers(2, 300)), int(rng.integers(1, 70))
    centers = rng.normal(scale=3.0, size=(k, dim))
    points = (centers[rng.integers(k, size=4000)] + rng.normal(size=(4000, dim))).astype(np.float32)
    index = torchkernel.NearestKernel(centers, "cpu")(points)
    assert index.dtype == np.int32
    np.testing.assert_array_equal(index, localkmeans.nearest(points, centers))
    np.testing.assert_array_equal(index, _brute_force(points, centers))


def test_near_ties_and_large_offsets_are_settled_exactly():
    rng = np.random.default_rng(3)
    centers = rng.normal(scale=4.0, size=(30, 16))
    pairs = rng.integers(30, size=(3000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    halfway = (centers[pairs[:, 0]] + centers[pairs[:, 1]]) / 2
    points = halfway + rng.normal(scale=1e-9, size=halfway.shape)  # float64 input, within 1e-9 of a bisector
    for offset in (0.0, 1e4, 1e6, 1e8):
        index = torchkernel.NearestKernel(centers + offset, "cpu")(points + offset)
        np.testing.assert_array_equal(index, _brute_force(points + offset, centers + offset))


def test_exact_ties_go_to_the_lowest_index_in_every_block(monkeypatch):
    centers = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    points = np.array([[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.5, -3.0], [-2.0, 0.0]] * 7)
    expected = np.tile([0, 0, 0, 0, 1], 7)
    monkeypatch.setattr(torchkernel, "DEVICE_SCORE_ELEMENTS", 4 * 3)  # blocks of 3 rows
    np.testing.assert_array_equal(torchkernel.NearestKernel(centers + 1e6, "cpu")(points + 1e6), expected)


def test_one_center_and_non_finite_scores():
    points = np.array([[1.0, 2.0], [3e38, 3e38], [0.0, 0.0]], dtype=np.float32)
    assert torchkernel.NearestKernel(np.array([[5.0, 5.0]]), "cpu")(points).tolist() == [0, 0, 0]
    centers = np.array([[0.0, 0.0], [1.0, 1.0]])
    # The second row's float32 scores overflow: settled in float64 like numpy's kernel does.
    with np.errstate(over="ignore", invalid="ignore"):
        expected = localkmeans.nearest(points, centers)
    np.testing.assert_array_equal(torchkernel.NearestKernel(centers, "cpu")(points), expected)


def test_driver_fit_through_the_resident_assigner_is_the_numpy_fit():
    rng = np.random.default_rng(5)
    x = (
        rng.normal(scale=5.0, size=(12, 8))[rng.integers(12, size=6000)] + rng.normal(size=(6000, 8))
    ).astype(np.float32)
    plain = localkmeans.fit(x, 12, 20, 1e-4, "k-means||", 2, seed=7)
    on_torch = localkmeans.fit(
        x, 12, 20, 1e-4, "k-means||", 2, seed=7, assigner=torchkernel.resident_assigner(x, "cpu")
    )
    np.testing.assert_array_equal(on_torch[0], plain[0])  # bit for bit: the sums stay in numpy
    assert on_torch[1:] == plain[1:]


def test_accelerator_setting_resolves_per_host():
    assert torchkernel.resolve_accelerator("cpu") == "cpu"
    expected = "cuda" if torchkernel.cuda_visible() else "cpu"
    assert torchkernel.resolve_accelerator("auto") == expected
    with pytest.raises(ValueError, match="accelerator must be one of auto, cpu, cuda, got 'gpu'"):
        torchkernel.resolve_accelerator("gpu")
    if expected == "cpu":
        with pytest.raises(ValueError, match="accelerator 'cuda' was asked for"):
            torchkernel.resolve_accelerator("cuda")
        # 'auto' on a host without a GPU is the numpy kernel.
        centers = np.eye(3)
        nearest = kernels.nearest_function(centers, "auto")
        assert nearest(np.eye(3)[::-1].copy()).tolist() == [2, 1, 0]


def test_asking_for_cuda_without_a_gpu_fails_before_any_work(spark):
    if torchkernel.cuda_visible():
        pytest.skip("this host has a GPU")
    from spark_sensitivity import SensitivitySampler

    frame = spark.createDataFrame(
        [(i, [float(i), 0.0]) for i in range(20)], "id long, embedding array<double>"
    )
    with pytest.raises(ValueError, match="accelerator 'cuda' was asked for"):
        SensitivitySampler(k=2, fitEngine="driver", accelerator="cuda").fit(frame)
