"""--whiten / whiten=True: the Gram pass, the whitened fit, the original vectors in the subset, refusal
of a singular Gram matrix, persistence and a 1e6 offset, on real local Spark."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import blobs, embeddings_frame
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler, SensitivitySamplerModel
from spark_sensitivity.cli.app import main
from spark_sensitivity.core.kmeans.whiten import gram_sums, whitening_matrix
from spark_sensitivity.workflows.refresh import score_new_rows

# Columns of very different scales and correlated: whitening changes the clusters.
MIX = np.array([[1.0, 0.0, 0.0], [0.8, 12.0, 0.0], [0.0, 0.5, 0.05]])


def inverse_sqrt(gram: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(gram)
    return vectors @ np.diag(values**-0.5) @ vectors.T


@pytest.fixture(scope="module")
def points():
    x, _ = blobs(1200, 3, 4, seed=5)
    return x @ MIX


@pytest.fixture(scope="module")
def frame(spark, points):
    return embeddings_frame(spark, points, partitions=3, element="double").persist()


def by_id(model, frame, columns=("cluster_id", "sensitivity")):
    return {r["id"]: tuple(r[c] for c in columns) for r in model.transform(frame).collect()}


def test_gram_pass_equals_numpy_and_skips_invalid_rows(spark, points):
    rows = [(i, [float(v) for v in p]) for i, p in enumerate(points)]
    rows += [(5000, None), (5001, [1.0, 2.0]), (5002, [float("nan"), 1.0, 1.0])]
    frame = spark.createDataFrame(rows, "id long, embedding array<double>").repartition(4)
    found = gram_sums(frame, "embedding")
    assert (found.dim, found.rows) == (3, len(points))
    np.testing.assert_allclose(found.matrix, points.T @ points, rtol=1e-12, atol=1e-9)
    vectors = frame.where(F.col("id") < 5000).withColumn("embedding", array_to_vector("embedding"))
    np.testing.assert_allclose(
        gram_sums(vectors, "embedding").matrix, points.T @ points, rtol=1e-12, atol=1e-9
    )


def test_whitened_fit_equals_the_fit_on_numpy_whitened_vectors(spark, points, frame):
    white = points @ inverse_sqrt(points.T @ points / len(points))
    reference = SensitivitySampler(k=4, seed=3, pointsPerCenter=0).fit(
        embeddings_frame(spark, white, partitions=3, element="double")
    )
    model = SensitivitySampler(k=4, seed=3, pointsPerCenter=0, whiten=True).fit(frame)
    assert model.getWhiten() and "whiten_seconds" in model.fitInfo
    # W is (G/n)^-1/2 up to a rotation R (W^T W = (G/n)^-1), which changes no distance: the centers
    # are the reference's rotated by R, the clusters and sensitivities the reference's.
    gram, w = points.T @ points / len(points), model.whiteningMatrix
    np.testing.assert_allclose(w.T @ w, np.linalg.inv(gram), rtol=1e-9)
    rotation = w @ np.linalg.inv(inverse_sqrt(gram))
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
    rotated = np.array(reference.clusterCenters()) @ rotation.T
    np.testing.assert_allclose(model.clusterCenters(), rotated, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(model.clusterStats.sizes, reference.clusterStats.sizes)
    mine, theirs = by_id(model, frame), by_id(reference, embeddings_frame(spark, white, element="double"))
    assert [mine[i][0] for i in sorted(mine)] == [theirs[i][0] for i in sorted(theirs)]
    np.testing.assert_allclose(
        [mine[i][1] for i in sorted(mine)], [theirs[i][1] for i in sorted(theirs)], rtol=1e-6
    )
    plain = SensitivitySampler(k=4, seed=3, pointsPerCenter=0).fit(frame)
    assert not np.array_equal(plain.clusterStats.sizes, model.clusterStats.sizes)  # whitening mattered
    for fitted in (reference, model, plain):
        fitted.summary.release()


def test_subset_keeps_the_original_vectors(points, frame):
    model = SensitivitySampler(k=4, seed=1, whiten=True).fit(frame)
    subset = model.sample(60).collect()
    assert sum(r["count"] for r in subset) == 60
    for row in subset:
        np.testing.assert_array_equal(row["embedding"], points[row["id"]])
    scored = model.transform(frame)
    assert scored.columns == ["id", "embedding", "cluster_id", "cost", "sensitivity", "probability"]
    first = scored.orderBy("id").first()
    np.testing.assert_array_equal(first["embedding"], points[first["id"]])
    model.summary.release()


def test_singular_gram_matrix_is_refused_with_its_rank(spark, points):
    collinear = np.hstack([points, points[:, :1] + points[:, 1:2]])
    frame = embeddings_frame(spark, collinear, element="double")
    with pytest.raises(ValueError, match=r"has rank 3 < dimension 4: .*drop collinear"):
        SensitivitySampler(k=4, whiten=True).fit(frame)
    # A constant column is an intercept, not a collinearity; two of them are.
    intercept = np.hstack([np.ones((len(points), 1)), points])
    assert whitening_matrix(
        gram_sums(embeddings_frame(spark, intercept, element="double"), "embedding"), "e"
    ).shape == (4, 4)
    twice = np.hstack([np.full((len(points), 1), 3.0), intercept])
    with pytest.raises(ValueError, match="rank 4 < dimension 5"):
        whitening_matrix(gram_sums(embeddings_frame(spark, twice, element="double"), "embedding"), "e")


def test_save_load_and_refresh_keep_the_transform(spark, points, frame, tmp_path):
    model = SensitivitySampler(k=4, seed=2, pointsPerCenter=0, whiten=True).fit(frame)
    model.write().save(str(tmp_path / "model"))
    loaded = SensitivitySamplerModel.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.whiteningMatrix, model.whiteningMatrix)
    assert loaded.getWhiten() and by_id(loaded, frame) == by_id(model, frame)
    new = embeddings_frame(spark, points[:300] * 1.01, element="double").withColumn(
        "id", F.col("id") + 10_000
    )
    scored = score_new_rows(loaded, new)
    expected = {i: c for i, (c,) in by_id(model, new, ("cluster_id",)).items()}
    assert {r["id"]: r["cluster_id"] for r in scored.assigned.collect()} == expected
    scored.release()
    subset = loaded.sample(40, dataset=frame)
    assert subset.agg(F.sum("count")).first()[0] == 40
    model.summary.release()


def test_offset_of_1e6_with_an_intercept_changes_nothing(spark, points):
    """[1, x] and [1, x + 1e6] span the same columns: whitened distances, and so the clusters and
    sensitivities, are the same; a naive eigendecomposition of G would lose them."""
    ones = np.ones((len(points), 1))
    near = np.hstack([ones, points])
    far = np.hstack([ones, points + 1e6])
    far_frame = embeddings_frame(spark, far, partitions=3, element="double")
    found = gram_sums(far_frame, "embedding")
    np.testing.assert_allclose(found.matrix, far.T @ far, rtol=1e-12)
    whitened = far @ whitening_matrix(found, "embedding").T
    np.testing.assert_allclose(whitened.T @ whitened / len(far), np.eye(4), atol=1e-5)
    settings = {"k": 4, "seed": 4, "pointsPerCenter": 0, "whiten": True}
    model_far = SensitivitySampler(**settings).fit(far_frame)
    near_frame = embeddings_frame(spark, near, partitions=3, element="double")
    model_near = SensitivitySampler(**settings).fit(near_frame)
    a, b = by_id(model_far, far_frame), by_id(model_near, near_frame)
    assert [a[i][0] for i in sorted(a)] == [b[i][0] for i in sorted(b)]
    np.testing.assert_allclose([a[i][1] for i in sorted(a)], [b[i][1] for i in sorted(b)], rtol=1e-4)
    model_far.summary.release()
    model_near.summary.release()


def test_cli_flag_reaches_the_manifest_and_the_saved_model(spark, tmp_path, points, frame):
    table = str(tmp_path / "table")
    frame.write.parquet(table)
    out = tmp_path / "out"
    args = ["select", "--input", table, "--output", str(out), "--sample-size", "30", "--k", "4"]
    assert main([*args, "--whiten", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["whiten"] is True and "whiten_seconds" in manifest["kmeans_fit"]
    assert SensitivitySamplerModel.load(str(out / "model")).whiteningMatrix.shape == (3, 3)
    subset = pq.read_table(out / "subset").to_pylist()
    for row in subset:
        np.testing.assert_array_equal(row["embedding"], points[row["id"]])
    loss_aware = [*args, "--output", str(tmp_path / "la"), "--whiten", "--mode", "loss-aware", "--quiet"]
    assert main(loss_aware) != 0
