"""Iceberg set-up as a new user meets it: the README's write and read-back blocks run as written, a
missing SQLite catalog is created by the first write (and by nothing else), and its name decides
where the tables can be read back."""

import json
import re
import shlex

import pyarrow.parquet as pq
import pytest
from conftest import REPO
from pyiceberg.catalog import load_catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

from spark_sensitivity.cli import main
from spark_sensitivity.io.datasets import write_gaussian_mixture
from spark_sensitivity.io.iceberg import IcebergOutput


def _iceberg_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("### Iceberg tables")
    return text[start : text.index("\n## ", start)]


def _blocks(language: str, root) -> list[str]:
    """The README Iceberg section's blocks of ``language``, with its ``/data/`` in the test folder."""
    blocks = re.findall(rf"```{language}\n(.*?)```", _iceberg_section(), re.S)
    return [block.replace("/data/", f"{root}/") for block in blocks]


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def _select(tmp_path, *flags: str) -> int:
    write_gaussian_mixture(tmp_path / "in", n=400, dim=4, clusters=3, seed=3, rows_per_file=400)
    return main(["select", "--input", str(tmp_path / "in"), "--k", "3", "--sample-size", "50",
                 "--output", str(tmp_path / "out"), "--quiet", *flags])  # fmt: skip


def test_the_readme_creates_the_catalog_writes_and_reads_back(spark, tmp_path):
    root = tmp_path / "data"
    write_gaussian_mixture(root / "embeddings", n=2000, dim=8, clusters=5, seed=11, rows_per_file=1000)
    (write,) = [b for b in _blocks("bash", root) if "--output-table sel.subset" in b and "name=lake" in b]
    args = shlex.split(write.replace("\\\n", " "))
    assert args[:2] == ["spark-sensitivity", "select"] and not (root / "lake").exists()
    assert main([*args[1:], "--quiet"]) == 0
    assert (root / "lake" / "catalog.db").is_file()

    namespace: dict = {}
    for snippet in _blocks("python", root):
        exec(compile(snippet, "README.md", "exec"), namespace)

    folder = pq.read_table(root / "subsets" / "day1" / "subset")
    subset, clusters = namespace["subset"], namespace["clusters"]
    assert sum(subset["count"].to_pylist()) == 1000 and subset.num_rows == folder.num_rows
    assert sorted(subset["id"].to_pylist()) == sorted(folder["id"].to_pylist())
    assert sum(clusters["size"].to_pylist()) == 2000
    rows = namespace["rows"]
    assert sorted(r.id for r in rows.select("id").collect()) == sorted(folder["id"].to_pylist())
    manifest = json.loads((root / "subsets" / "day1" / "manifest.json").read_text())
    assert manifest["iceberg"]["subset"]["catalog"] == "lake"

    # The tables are kept under the catalog's name: pyiceberg's default name does not see them.
    props = {"uri": f"sqlite:///{root}/lake/catalog.db", "warehouse": f"file://{root}/lake/warehouse"}
    assert load_catalog("lake", **props).table_exists("sel.subset")
    with pytest.raises((NoSuchTableError, NoSuchNamespaceError)):
        load_catalog("default", **props).load_table("sel.subset")


def test_without_a_name_the_tables_are_under_default(spark, tmp_path):
    props = {"uri": f"sqlite:///{tmp_path}/new/catalog.db", "warehouse": f"file://{tmp_path}/new/wh"}
    flags = [f for key, value in props.items() for f in ("--catalog-option", f"{key}={value}")]
    assert _select(tmp_path, *flags, "--output-format", "iceberg", "--output-table", "sel.subset") == 0
    rows = SqlCatalog("default", **props).load_table("sel.subset").scan().to_arrow()
    assert sum(rows["count"].to_pylist()) == 50
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["iceberg"]["clusters"]["catalog"] == "default"


def test_a_read_never_creates_a_catalog(spark, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/lake/catalog.db"
    code = main(["select", "--format", "iceberg", "--input", "lake.points", "--catalog-option", f"uri={uri}",
                 "--sample-size", "5", "--output", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 2
    assert _error_line(capsys) == (
        f"error: Iceberg catalog {uri} does not exist (no SQLite database at {tmp_path}/lake/catalog.db); "
        "a run with --output-format iceberg creates it"
    )
    assert not (tmp_path / "lake").exists() and not (tmp_path / "out").exists()


def test_a_run_failing_before_its_tables_leaves_no_catalog(spark, tmp_path, capsys):
    flags = ["--catalog-option", f"uri=sqlite:///{tmp_path}/lake/catalog.db", "--output-format", "iceberg",
             "--output-table", "sel.subset", "--vector-col", "vec"]  # fmt: skip
    assert _select(tmp_path, *flags) == 2
    assert _error_line(capsys).startswith("error: input has no column 'vec'")
    assert not (tmp_path / "lake").exists()


def test_an_aborted_write_removes_the_catalog_it_created(spark, tmp_path):
    props = {"uri": f"sqlite:///{tmp_path}/a/b/catalog.db", "warehouse": f"file://{tmp_path}/wh"}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("not the run's")
    output = IcebergOutput(props, "sel.subset", overwrite=False)
    assert not (tmp_path / "a" / "b").exists()  # created with the first staged table, not before
    output.stage("subset", spark.createDataFrame([(1, 2.0)], "id long, weight double"))
    assert (tmp_path / "a" / "b" / "catalog.db").is_file()
    output.abort()
    assert not (tmp_path / "a" / "b").exists() and (tmp_path / "a" / "keep.txt").is_file()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlite:///{tmp}/file.txt/catalog.db", "error: cannot create Iceberg catalog sqlite:///{tmp}/file.txt/catalog.db: {tmp}/file.txt is not a writable folder"),
        ("postgresql+psycopg2://127.0.0.1:1/lake", "error: cannot open Iceberg catalog 'default': "),
    ],
)  # fmt: skip
def test_a_catalog_that_cannot_be_made_or_opened_is_one_line(spark, tmp_path, capsys, uri, message):
    (tmp_path / "file.txt").write_text("")
    flags = ["--catalog-option", f"uri={uri.format(tmp=tmp_path)}", "--output-format", "iceberg",
             "--output-table", "sel.subset"]  # fmt: skip
    assert _select(tmp_path, *flags) == 2
    assert _error_line(capsys).startswith(message.format(tmp=tmp_path))
    assert not (tmp_path / "out").exists()
