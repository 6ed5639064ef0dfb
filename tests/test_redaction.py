"""Secrets in URIs and options never reach the manifest, the logs, the report or any written file."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from spark_sensitivity.io.redaction import MASK, redact, redact_text

# Passwords holding the characters a userinfo pattern tends to stop at: / + @ : %
CLI = "import sys; from spark_sensitivity.cli import main; sys.exit(main(sys.argv[1:]))"
SECRETS = ["S3c/retPW", "pW+7@q:z%2Fk", "a@b@c", "x:y/z+w%40v", "tr4il/"]


def test_uri_user_info_and_secret_query_parameters_are_masked():
    assert redact_text("s3a://AKIA123:s3cr3t@bucket/data") == "s3a://***@bucket/data"
    assert redact_text("https://acct.blob/x?sv=1&sig=abc%2F&se=2") == "https://acct.blob/x?sv=1&sig=***&se=2"
    assert redact_text("hdfs://namenode:8020/data") == "hdfs://namenode:8020/data"


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize(
    "template, masked",
    [
        ("postgresql://alice:{}@db/x", "postgresql://***@db/x"),
        ("jdbc:mysql://bob:{}@db.example.com:3306/sales?ssl=true", "jdbc:mysql://***@db.example.com:3306/sales?ssl=true"),
        ("s3a://AKIA:{}@bucket/data/part-0.parquet", "s3a://***@bucket/data/part-0.parquet"),
        ("https://{}@host", "https://***@host"),
        ("error: cannot read 'mongodb://u:{}@h:27017/db' (refused)", "error: cannot read 'mongodb://***@h:27017/db' (refused)"),
    ],
)  # fmt: skip
def test_the_whole_userinfo_is_masked_up_to_the_last_at(template, masked, secret):
    assert redact_text(template.format(secret)) == masked


def test_two_uris_in_one_text_are_masked_each():
    text = "from ftp://u:{0}@a/x to sftp://v:{0}@b/y".format(SECRETS[1])
    assert redact_text(text) == "from ftp://***@a/x to sftp://***@b/y"


def test_text_without_user_info_is_left_alone():
    for text in ("file:/data/in", "s3a://bucket/data?versionId=3", "a@b.com wrote it", "key=value"):
        assert redact_text(text) == text


def test_nested_values_are_masked_by_key_name():
    value = {"input_options": {"password": "p", "fs.s3a.access.key": "k", "sep": ";"}, "k": 3}
    assert redact(value) == {
        "input_options": {"password": "***", "fs.s3a.access.key": "***", "sep": ";"},
        "k": 3,
    }
    nested = {"a": [f"postgresql://u:{SECRETS[0]}@h/x", {"token": 12}], "b": (1, f"s3a://k:{SECRETS[1]}@b/p")}
    assert redact(nested) == {"a": ["postgresql://***@h/x", {"token": MASK}], "b": [1, "s3a://***@b/p"]}


def test_a_run_writes_no_secret_anywhere(tmp_path):
    """A real select (logs on, report, Iceberg tables) given secrets in --input-option values."""
    rng = np.random.default_rng(0)
    (tmp_path / "input").mkdir()
    table = pa.table({"id": pa.array(range(300), pa.int64()),
                      "embedding": pa.array(rng.normal(size=(300, 3)).tolist(), pa.list_(pa.float32()))})  # fmt: skip
    pq.write_table(table, tmp_path / "input" / "part-0.parquet")
    (tmp_path / "warehouse").mkdir()
    catalog = {"uri": f"sqlite:///{tmp_path}/catalog.db", "warehouse": f"file://{tmp_path}/warehouse"}
    SqlCatalog("default", **catalog)  # creates the catalog's database
    options = [f"opt{i}=postgresql://alice:{secret}@db/x" for i, secret in enumerate(SECRETS)]
    command = [sys.executable, "-c", CLI, "select", "--input", str(tmp_path / "input"),
               "--k", "3", "--sample-size", "50", "--output", str(tmp_path / "out"), "--report",
               "--output-format", "iceberg", "--output-table", "sel.subset",
               *[f for o in options for f in ("--input-option", o)],
               *[f for k, v in catalog.items() for f in ("--catalog-option", f"{k}={v}")]]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "stage write" in run.stderr  # the log was on
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["parameters"]["input_options"]["opt0"] == "postgresql://***@db/x"
    assert (tmp_path / "out" / "report" / "index.html").exists()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "input" not in p.relative_to(tmp_path).parts]
    assert any("metadata" in p.parts for p in written)  # the Iceberg tables' metadata and snapshots
    for secret in SECRETS:
        for fragment in {secret, *secret.split("@")} - {"a", "b", "c"}:
            fragment = fragment.encode()
            assert fragment not in run.stdout.encode() and fragment not in run.stderr.encode()
            assert [p for p in written if fragment in p.read_bytes()] == []
