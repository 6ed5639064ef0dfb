"""The code in docs/TRAINING.md runs, in order, against a subset written by the select job."""

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, blobs

from spark_sensitivity.cli import main


def _snippets() -> list[str]:
    text = (REPO / "docs" / "TRAINING.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_training_md_has_the_promised_snippets():
    code = "\n".join(_snippets())
    for needle in ("LogisticRegression", "WeightedRandomSampler", 'reduction="none"', "from datasets"):
        assert needle in code
    assert "w / w.mean()" in code


def test_training_snippets_run_on_a_selected_subset(spark, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # the datasets cache stays in the test folder
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    points, labels = blobs(1500, 4, 3, seed=8)
    flat = pa.array(points.ravel())
    table = pa.table(
        {
            "id": pa.array(np.arange(len(points))),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, 4).cast(pa.list_(pa.float64())),
            "label": pa.array(labels),
        }
    )
    pq.write_table(table, tmp_path / "table.parquet")
    flags = ["--k", "6", "--sample-size", "150", "--seed", "2", "--quiet"]
    assert (
        main(
            ["select", "--input", str(tmp_path / "table.parquet"), "--output", str(tmp_path / "OUT"), *flags]
        )
        == 0
    )

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for snippet in _snippets():
        exec(compile(snippet, "docs/TRAINING.md", "exec"), namespace)

    assert namespace["w"].mean() == pytest.approx(1.0)
    assert len(namespace["X"]) == len(namespace["subset"]) <= 150
    # every model trained on the subset classifies the whole table well (the blobs are separable)
    assert (namespace["clf"].predict(points) == labels).mean() > 0.95
    torch = namespace["torch"]
    everything = torch.tensor(points, dtype=torch.float32)
    for net in ("net", "resampled_net"):
        with torch.no_grad():
            predicted = namespace[net](everything).argmax(dim=1).numpy()
        assert (predicted == labels).mean() > 0.95, net
    dataset = namespace["dataset"]
    assert len(dataset) == len(namespace["subset"])
    assert float(dataset[:]["sample_weight"].mean()) == pytest.approx(1.0, rel=1e-6)
