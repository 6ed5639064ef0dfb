"""Config files, placeholders, dry runs and redaction, through the real CLI on local Spark."""

import json

import pyarrow.parquet as pq
import pytest

from spark_sensitivity.cli.app import main, parse_args
from spark_sensitivity.io.datasets import write_gaussian_mixture


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "mixture"
    write_gaussian_mixture(path, n=1200, dim=4, clusters=3, seed=2)
    return path


def test_config_file_sets_flags_and_flags_override_it(tmp_path, table):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"input: {table}\noutput: {tmp_path / 'out'}\nsample-size: 40\nk: 5\noverwrite: true\n"
        "input-option:\n  mergeSchema: 'false'\n"
    )
    args = parse_args(["select", "--config", str(config), "--k", "7"])
    assert (args.sample_size, args.k, args.overwrite) == (40, 7, True)
    assert args.input == str(table) and args.input_option == [("mergeSchema", "false")]
    json_config = tmp_path / "run.json"
    json_config.write_text(json.dumps({"input": "x", "output": "y", "sample_size": 3, "z": 1}))
    assert parse_args(["select", "--config", str(json_config)]).z == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("input: x\nsampel-size: 3\n", "unknown setting 'sampel-size'"),
        ("z: 3\n", "z must be one of [1, 2], got 3"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("k: [unclosed\n", "is not valid YAML or JSON"),
    ],
)
def test_bad_config_files_exit_2(tmp_path, capsys, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["select", "--config", str(config), "--input", "i", "--output", "o", "--sample-size", "1"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_run_id_and_date_placeholders_and_manifest_config(spark, tmp_path, table):
    config = tmp_path / "run.yaml"
    config.write_text("k: 3\nsample-size: 25\n")
    output = str(tmp_path / "subsets" / "dt={date}" / "run={run_id}")
    code = main(
        [
            "select",
            "--config",
            str(config),
            "--input",
            str(table),
            "--output",
            output,
            "--run-id",
            "r42",
            "--quiet",
        ]
    )
    assert code == 0
    [published] = list((tmp_path / "subsets").glob("dt=*/run=r42"))
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["run_id"] == "r42" and manifest["output"] == str(published)
    assert manifest["parameters"]["config_file"] == str(config)
    assert manifest["parameters"]["k"] == 3 and manifest["m"] == 25


def test_dry_run_plans_without_writing(spark, tmp_path, table, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "select",
            "--input",
            str(table),
            "--k",
            "4",
            "--sample-size",
            "300",
            "--output",
            str(out),
            "--dry-run",
            "--quiet",
        ]
    )
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["n"], plan["d"], plan["k"], plan["m"]) == (1200, 4, 4, 300)
    assert plan["estimated_work"]["assignment_multiply_adds"] == 1200 * 4 * 4
    assert plan["suggested"]["k"] == 30 and len(plan["stages"]) == 5
    assert not out.exists()


def test_credentials_are_redacted_from_manifest_and_output(spark, tmp_path, table, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "select", "--input", str(table), "--k", "3", "--sample-size", "10", "--output", str(out),
            "--input-option", "fs.s3a.secret.key=hunter2", "--input-option", "mergeSchema=false",
        ]
    )  # fmt: skip
    assert code == 0
    manifest_text = (out / "manifest.json").read_text()
    assert "hunter2" not in manifest_text and "hunter2" not in capsys.readouterr().err
    options = json.loads(manifest_text)["parameters"]["input_options"]
    assert options == {"fs.s3a.secret.key": "***", "mergeSchema": "false"}
    assert pq.read_table(out / "subset")["count"].to_numpy().sum() == 10


def test_spark_conf_reaches_the_jvm_this_process_launches():
    # spark.driver.memory and spark.driver.extraJavaOptions are read only when the driver's JVM
    # starts: given to the builder after the launch, the heap stayed at Spark's default of 1g.
    import subprocess
    import sys

    code = (
        "from spark_sensitivity.io.session import spark_session\n"
        "conf = [('spark.driver.memory', '2g'),\n"
        "        ('spark.driver.extraJavaOptions', '-Dspark_sensitivity.probe=launched')]\n"
        "jvm = spark_session('probe', conf, quiet=True).sparkContext._jvm\n"
        "print('HEAP', jvm.java.lang.Runtime.getRuntime().maxMemory())\n"
        "print('PROBE', jvm.java.lang.System.getProperty('spark_sensitivity.probe'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line[:5] in ("HEAP ", "PROBE"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(lines["HEAP"]) > 1.5 * 2**30  # 2g asked for; the default would give under 1g
    assert lines["PROBE"] == "launched"


def test_a_launched_jvm_maps_the_class_archive_unless_told_otherwise(tmp_path, monkeypatch):
    from spark_sensitivity.io import session

    archive = tmp_path / "spark-classes.jsa"
    monkeypatch.setattr(session, "CLASS_ARCHIVE", archive)
    options = session.DRIVER_JAVA_OPTIONS
    assert session._launch_conf([], quiet=False).get(options) is None  # no archive: nothing added
    archive.write_bytes(b"archive")
    user = [("spark.driver.memory", "3g"), (options, "-Dmine=1")]
    launch = session._launch_conf(user, quiet=True)
    assert launch.get(options) == f"-XX:SharedArchiveFile={archive} -Xlog:cds*=off -Dmine=1"
    assert launch.get("spark.driver.memory") == "3g" and launch.get(session.PROGRESS_BARS) == "false"
    for own in ("-Xshare:off", "-XX:SharedArchiveFile=/elsewhere.jsa", "-XX:ArchiveClassesAtExit=x.jsa"):
        assert session._launch_conf([(options, own)], quiet=False).get(options) == own
