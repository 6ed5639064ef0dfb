"""The pyspark.ml face: params, transform, persistence and input validation."""

import numpy as np
import pytest
from conftest import blobs, embeddings_frame
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from spark_sensitivity import SensitivitySampler, SensitivitySamplerModel


@pytest.fixture(scope="module")
def frame(spark):
    points, component = blobs(1500, 3, 4, seed=3)
    return embeddings_frame(spark, points, element="double").persist()


def test_transform_adds_scores_consistent_with_the_fit(frame):
    model = SensitivitySampler(k=4, seed=1, pointsPerCenter=0).fit(frame)
    scored = model.transform(frame)
    assert scored.columns == ["id", "embedding", "cluster_id", "cost", "sensitivity", "probability"]
    totals = scored.agg(F.sum("probability"), F.sum("sensitivity"), F.count("*")).first()
    assert totals[0] == pytest.approx(1.0, rel=1e-9)
    assert totals[1] == pytest.approx(1 + model.clusterStats.nonempty, rel=1e-9)
    sizes = {r["cluster_id"]: r["count"] for r in scored.groupBy("cluster_id").count().collect()}
    assert [sizes[j] for j in range(4)] == list(model.clusterStats.sizes)
    model.summary.release()


def test_vector_column_and_k_median_cost(frame):
    vectors = frame.withColumn("embedding", array_to_vector("embedding"))
    model = SensitivitySampler(k=4, seed=1, costPower=1, pointsPerCenter=0).fit(vectors)
    row = model.transform(vectors).first()
    center = model.clusterCenters()[row["cluster_id"]]
    assert row["cost"] == pytest.approx(np.linalg.norm(row["embedding"].toArray() - center), rel=1e-9)
    model.summary.release()


def test_model_round_trips_through_save_and_load(frame, tmp_path):
    model = SensitivitySampler(k=4, seed=2, idCol="id", pointsPerCenter=0).fit(frame)
    model.write().save(str(tmp_path / "model"))
    loaded = SensitivitySamplerModel.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(np.array(loaded.clusterCenters()), np.array(model.clusterCenters()))
    np.testing.assert_array_equal(loaded.clusterStats.sizes, model.clusterStats.sizes)
    assert loaded.getK() == 4 and loaded.getSeed() == 2 and loaded.uid == model.uid
    assert loaded.fitInfo["fit_rows"] == 1500
    before = model.transform(frame).select("id", "probability").orderBy("id").collect()
    after = loaded.transform(frame).select("id", "probability").orderBy("id").collect()
    assert before == after
    subset = loaded.sample(100, dataset=frame)
    assert subset.agg(F.sum("count")).first()[0] == 100
    model.summary.release()


def test_estimator_round_trips_through_save_and_load(tmp_path):
    sampler = SensitivitySampler(k=7, costPower=1, fitFraction=0.25)
    sampler.write().save(str(tmp_path / "sampler"))
    loaded = SensitivitySampler.load(str(tmp_path / "sampler"))
    assert (loaded.getK(), loaded.getCostPower(), loaded.getFitFraction()) == (7, 1, 0.25)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": 0}, "k must be at least 1"),
        ({"costPower": 3}, "costPower must be one of 1, 2, got 3"),
        ({"fitFraction": 1.5}, "fitFraction must be at most 1, got 1.5"),
        ({"featuresCol": "missing"}, "input has no column 'missing'"),
        ({"k": 5000, "pointsPerCenter": 0}, "k=5000 is larger than the 1500 valid rows"),
    ],
)
def test_bad_parameters_fail_with_a_clear_message(frame, params, message):
    with pytest.raises(ValueError, match=message):
        SensitivitySampler(**params).fit(frame)


def test_invalid_embeddings_fail_or_are_skipped(spark):
    rows = [(i, [float(i % 7), 1.0, 2.0]) for i in range(200)]
    rows[5] = (5, None)
    rows[9] = (9, [1.0, float("nan"), 0.0])
    rows[13] = (13, [1.0, 2.0])
    df = spark.createDataFrame(rows, "id long, embedding array<double>")
    with pytest.raises(
        ValueError,
        match=r"'embedding' has 3 rows that are null, of the wrong length or not finite \(e\.g\. ids \d+",
    ):
        SensitivitySampler(k=3, pointsPerCenter=0).fit(df)
    model = SensitivitySampler(k=3, pointsPerCenter=0, onInvalid="skip").fit(df)
    assert model.fitInfo["invalid_rows"] == 3
    assert model.clusterStats.n == 197
    model.summary.release()


def test_null_ids_and_clashing_columns_are_rejected(spark):
    df = spark.createDataFrame(
        [(None if i == 4 else i, [float(i), 0.0]) for i in range(50)], "id long, embedding array<double>"
    )
    with pytest.raises(ValueError, match="'id' has 1 null values"):
        SensitivitySampler(k=2, pointsPerCenter=0).fit(df)
    with pytest.raises(ValueError, match="'weight' clashes"):
        SensitivitySampler(k=2).fit(df.withColumn("weight", F.lit(1.0)))


def test_overwrite_replaces_a_saved_model_or_estimator_only(frame, tmp_path):
    # pyspark's own overwrite() needs the JVM; this one works over Spark Connect too (CONNECT_TESTS).
    model = SensitivitySampler(k=3, seed=2, idCol="id", pointsPerCenter=0).fit(frame)
    path = str(tmp_path / "model")
    model.write().save(path)
    with pytest.raises(Exception, match="already exists|exists"):
        model.write().save(path)
    other = SensitivitySampler(k=5, seed=2, idCol="id", pointsPerCenter=0).fit(frame)
    other.write().overwrite().save(path)
    assert SensitivitySamplerModel.load(path).getK() == 5
    sampler_path = str(tmp_path / "sampler")
    SensitivitySampler(k=7).write().save(sampler_path)
    SensitivitySampler(k=9).write().overwrite().save(sampler_path)
    assert SensitivitySampler.load(sampler_path).getK() == 9
    # A folder that is not a saved model is never deleted.
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a saved model"):
        model.write().overwrite().save(str(precious))
    with pytest.raises(FileExistsError, match="is not a saved estimator"):
        SensitivitySampler(k=7).write().overwrite().save(str(precious))
    assert (precious / "data.txt").read_text() == "keep me"
    model.summary.release()
    other.summary.release()
