"""deploy/: every file parses, and every job argument in it is a real flag of the job's command line.

The deploy files run the job with written-out arguments; parsing them here with the job's own parser
makes a renamed or removed flag fail the tests instead of a scheduled run. Paths and versions that
two files must agree on (where the image puts the job, the Spark version, the wheel's name) are
checked against each other and against the installed package.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import jinja2.sandbox
import pyspark
import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement

from spark_sensitivity.cli.app import build_parser, parse_args
from spark_sensitivity.cli.embed import add_embed_job_arguments
from spark_sensitivity.cli.select import add_select_arguments

DEPLOY = REPO / "deploy"
DISTRIBUTION = "spark-sensitivity"
JOB_IN_IMAGE = "/opt/spark-sensitivity/jobs/select_subset.py"
REQUIRED = ("input", "output", "sample_size")


class _Refusing(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints the usage and exits
        raise ValueError(message)


def check_job_args(args: list[str], source: str, command: str = "select") -> argparse.Namespace:
    """Parses ``args`` as the job does (command ``select`` of jobs/select_subset.py, or ``embed`` of
    jobs/embed.py; a --config file applied), then again without abbreviations: argparse takes
    --sample for --sample-size, which would hide a renamed flag."""
    assert all(isinstance(arg, str) for arg in args), f"{source}: arguments must be strings: {args}"
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parsed = parse_args([command, *args])
    except SystemExit:
        complaint = errors.getvalue().strip().splitlines()[-1]  # after the usage text
        raise AssertionError(f"{source}: the job rejects {args}: {complaint}") from None
    exact = _Refusing(allow_abbrev=False)
    {"select": add_select_arguments, "embed": add_embed_job_arguments}[command](exact)
    try:
        exact.parse_args(args)
    except ValueError as error:
        raise AssertionError(f"{source}: {error}") from None
    if command == "select":
        missing = [name for name in REQUIRED if getattr(parsed, name) is None]
        assert not missing, f"{source}: the job needs --{missing[0].replace('_', '-')}"
    return parsed


def job_commands(text: str) -> list[list[str]]:
    """The job arguments of every shell command in ``text`` that runs jobs/select_subset.py."""
    joined = re.sub(r"\\\n[#\s]*", " ", text)  # continuation lines, also inside # comments
    commands = []
    for line in joined.splitlines():
        if "select_subset.py " in line:
            tokens = shlex.split(line.lstrip("# "))
            start = next(i for i, token in enumerate(tokens) if token.endswith("select_subset.py"))
            commands.append(tokens[start + 1 :])
    return commands


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [tuple(line.strip().split(None, 1)) for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--input", "a", "--output", "b", "--sample-size", "5", "--no-such-flag"], "unrecognized"),
        (["--input", "a", "--output", "b", "--sample", "5"], "unrecognized"),
        (["--input", "a", "--output", "b", "--sample-size", "many"], "expected an integer"),
        (["--input", "a", "--sample-size", "5"], "required: --output"),
    ],
)
def test_the_check_refuses_unknown_abbreviated_mistyped_and_missing_flags(args, complaint):
    with pytest.raises(AssertionError, match=complaint):
        check_job_args(args, "example")


def test_kubernetes_spark_application():
    app = yaml.safe_load((DEPLOY / "spark-application.yaml").read_text())
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2" and app["kind"] == "SparkApplication"
    spec = app["spec"]
    assert spec["type"] == "Python" and spec["mode"] == "cluster"
    assert spec["mainApplicationFile"] == f"local://{JOB_IN_IMAGE}"
    assert spec["sparkVersion"] == pyspark.__version__
    args = check_job_args(spec["arguments"], "spark-application.yaml")
    # The driver and the executors see the same files at the paths the job is given.
    conf = spec["sparkConf"]
    mounts = {key: value for key, value in conf.items() if key.endswith(".mount.path")}
    assert sorted(mounts) == [
        "spark.kubernetes.driver.volumes.persistentVolumeClaim.data.mount.path",
        "spark.kubernetes.executor.volumes.persistentVolumeClaim.data.mount.path",
    ]
    (mount,) = set(mounts.values())
    assert args.input.startswith(mount + "/") and args.output.startswith(mount + "/")


class _Recorded:
    """Stands in for an Airflow class in test_airflow_dag: keeps the arguments it was given, and the
    dependencies set with ``>>``."""

    made: list[_Recorded] = []
    edges: list[tuple[str, str]] = []

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        _Recorded.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __rshift__(self, other: _Recorded) -> _Recorded:
        _Recorded.edges.append((self.kwargs["task_id"], other.kwargs["task_id"]))
        return other


class _TaskDecorators:
    """Stands in for ``airflow.sdk.task``: ``@task.branch(...)`` keeps the function, and calling the
    decorated function gives what an XComArg gives: ``[key]`` names a key of that task's XCom."""

    branches: dict[str, Callable] = {}

    def branch(self, task_id: str):
        def decorate(function: Callable) -> Callable:
            _TaskDecorators.branches[task_id] = function
            return lambda: {key: ("xcom", task_id, key) for key in ("embed", "select")}

        return decorate


class _TaskInstance:
    """What the plan task uses of Airflow's task instance: xcom_push."""

    def __init__(self):
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key: str, value) -> None:
        json.dumps(value)  # XCom values must be JSON
        self.xcom[key] = value


def _run_dag_file(monkeypatch, env: dict[str, str]) -> types.SimpleNamespace:
    """Runs deploy/airflow_dag.py as Airflow's parser would, but with stand-ins for the Airflow and
    pendulum names it imports (Airflow is not installed here: tests/integration/test_airflow.py runs
    the file under real Airflow). Returns the DAG's arguments, its params' defaults and schemas, each
    operator's arguments by task id, the plan task's function, the dependencies, and the module."""
    for key in [key for key in os.environ if key.startswith("SPARK_SENSITIVITY_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    classes = {name: type(name, (_Recorded,), {}) for name in ("DAG", "Param", "SparkSubmitOperator")}
    modules = {
        "airflow": {},
        "airflow.sdk": {"DAG": classes["DAG"], "Param": classes["Param"], "task": _TaskDecorators()},
        "airflow.providers": {},
        "airflow.providers.apache": {},
        "airflow.providers.apache.spark": {},
        "airflow.providers.apache.spark.operators": {},
        "airflow.providers.apache.spark.operators.spark_submit": {
            "SparkSubmitOperator": classes["SparkSubmitOperator"]
        },
        "pendulum": {
            "datetime": lambda *a, tz: datetime.datetime(*a, tzinfo=datetime.timezone.utc),
            "duration": lambda **kw: datetime.timedelta(**kw),
        },
    }
    for name, names in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(names)
        monkeypatch.setitem(sys.modules, name, module)
    _Recorded.made, _Recorded.edges, _TaskDecorators.branches = [], [], {}
    module = runpy.run_path(str(DEPLOY / "airflow_dag.py"))
    (dag,) = [made.kwargs for made in _Recorded.made if isinstance(made, classes["DAG"])]
    operators = {
        made.kwargs["task_id"]: made.kwargs
        for made in _Recorded.made
        if isinstance(made, classes["SparkSubmitOperator"])
    }
    params = {name: (param.args[0], param.kwargs) for name, param in dag["params"].items()}
    return types.SimpleNamespace(
        dag=dag,
        params=params,
        defaults={name: default for name, (default, _) in params.items()},
        operators=operators,
        plan=_TaskDecorators.branches["plan"],
        edges=_Recorded.edges,
        module=module,
    )


def _plan(dag: types.SimpleNamespace, params: dict, ds: str) -> tuple[list[str], dict]:
    """Runs the plan task as Airflow would: the route it returns, and what it put in XCom."""
    ti = _TaskInstance()
    route = dag.plan(params=params, ds=ds, ti=ti)
    return route, ti.xcom


def _render(template, params: dict, ds: str):
    """Airflow's rendering of a templated field: Jinja, undefined names are errors."""
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    context = {"params": params, "ds": ds, "ds_nodash": ds.replace("-", "")}
    if isinstance(template, list):
        return [_render(item, params, ds) for item in template]
    if isinstance(template, dict):
        return {key: _render(value, params, ds) for key, value in template.items()}
    return env.from_string(template).render(context)


def _valid(value, schema: dict) -> bool:
    """The parts of JSON Schema the DAG's params use (Airflow validates them with jsonschema)."""
    kinds = {"string": str, "integer": int, "boolean": bool, "array": list, "null": type(None)}
    types_ = schema["type"] if isinstance(schema.get("type"), list) else [schema.get("type")]
    if "type" in schema and not any(
        isinstance(value, kinds[kind]) and (kind == "boolean" or not isinstance(value, bool))
        for kind in types_
    ):
        return False
    if isinstance(value, list):
        return all(_valid(item, schema.get("items", {})) for item in value)
    if isinstance(value, int) and not isinstance(value, bool) and value < schema.get("minimum", value):
        return False
    return value in schema.get("enum", [value])


class _Reads(dict):
    """A params mapping that records which names were read."""

    read: set[str]

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def test_airflow_dag_tasks(monkeypatch):
    dag = _run_dag_file(monkeypatch, {})
    assert dag.dag["dag_id"] == "spark_sensitivity_select"
    embed, select = dag.operators["embed"], dag.operators["select_subset"]
    assert embed["conn_id"] == select["conn_id"] == "spark_default"
    # Each job's arguments come from the plan task's XCom; select runs after embed or without it.
    assert embed["application_args"] == ("xcom", "plan", "embed")
    assert select["application_args"] == ("xcom", "plan", "select")
    assert select["trigger_rule"] == "none_failed_min_one_success" and "trigger_rule" not in embed
    assert dag.edges == [("embed", "select_subset")]
    for name, (default, schema) in dag.params.items():
        assert _valid(default, schema), f"param {name}: default {default!r} does not fit {schema}"
    assert not _valid("fast", dag.params["init_mode"][1]) and not _valid(0, dag.params["k"][1])

    # Every param is used: in a templated field, or by the plan.
    templated = json.dumps(
        [{key: task[key] for key in ("application", "py_files", "name", "conf")} for task in (embed, select)]
    )
    reads = _Reads({**dag.defaults, "embed": True})
    reads.read = set()
    dag.module["job_args"](reads, "2026-11-02")
    unused = [name for name in dag.params if f"params.{name} " not in templated and name not in reads.read]
    assert not unused, f"params no task uses: {unused}"
    day = _render(
        {"embed": embed["application"], "select": select["application"]}, dag.defaults, "2026-11-02"
    )
    assert day["select"] == JOB_IN_IMAGE
    # The embed job sits next to the select job, in the image as in the repository.
    assert os.path.dirname(day["embed"]) == os.path.dirname(JOB_IN_IMAGE)
    assert (REPO / "jobs" / os.path.basename(day["embed"])).is_file()
    assert _render(select["py_files"], dag.defaults, "2026-11-02").endswith("/spark_sensitivity.zip")


def test_airflow_dag_default_run_selects_the_days_input(monkeypatch):
    dag = _run_dag_file(monkeypatch, {})
    route, xcom = _plan(dag, dag.defaults, "2026-11-02")
    assert route == ["select_subset"] and xcom["embed"] is None  # the embed task is skipped
    args = check_job_args(xcom["select"], "airflow_dag.py")
    # One input and one output per logical date: a rerun or backfill replaces its own day.
    assert args.input.endswith("date=2026-11-02") and args.output.endswith("date=2026-11-02")
    assert args.overwrite and (args.k, args.sample_size, args.seed, args.init_mode) == (
        1000,
        100000,
        7,
        "random",
    )
    _, next_day = _plan(dag, dag.defaults, "2026-11-03")
    assert check_job_args(next_day["select"], "airflow_dag.py").output != args.output

    # A run's conf (airflow dags test -c, a manual trigger) overrides params, as Airflow merges them.
    _, run = _plan(dag, {**dag.defaults, "k": 8, "args": ["--strategy", "auto"]}, "2026-11-02")
    parsed = check_job_args(run["select"], "dag")
    assert parsed.k == 8 and parsed.strategy == "auto"


def test_airflow_dag_curation_day_with_a_config_file(monkeypatch, tmp_path):
    """embed -> dedup + select -> Iceberg, settings from deploy/select_config.yaml and flags per run."""
    dag = _run_dag_file(monkeypatch, {})
    config = tmp_path / "select.yaml"
    config.write_text((DEPLOY / "select_config.yaml").read_text())
    conf = {
        "embed": True,
        "raw_input": "/lake/raw/{ds}",
        "input": "/lake/emb/{ds}",
        "config": str(config),
        "sample_size": 500,
        "embed_args": ["--embedder", "hashing", "--text-col", "body", "--keep-col", "label"],
        "args": ["--run-id", "day-{ds}"],
    }
    route, xcom = _plan(dag, {**dag.defaults, **conf}, "2026-11-02")
    assert route == ["embed", "select_subset"]
    embedded = check_job_args(xcom["embed"], "airflow_dag.py", command="embed")
    assert (embedded.input, embedded.output, embedded.overwrite) == (
        "/lake/raw/2026-11-02",
        "/lake/emb/2026-11-02",
        True,
    )
    assert (embedded.embedder, embedded.text_col, embedded.keep_col) == ("hashing", "body", ["label"])
    args = check_job_args(xcom["select"], "airflow_dag.py")
    assert args.input == embedded.output and args.run_id == "day-2026-11-02"
    # The config file's settings reach the job; the params set in the run override them, and those
    # left null (k, seed, init_mode) are not passed, so the file's or the job's own values hold.
    assert (args.strategy, args.dedup_eps, args.output_format, args.output_table) == (
        "auto",
        0.05,
        "iceberg",
        "curated.subset",
    )
    assert dict(args.catalog_option)["name"] == "lake" and args.sample_size == 500
    assert "--k" not in xcom["select"] and "--seed" not in xcom["select"] and args.seed == 7


def test_airflow_dag_settings_from_the_environment(monkeypatch):
    """An installation sets the defaults and the connection with environment variables, not edits."""
    env = {
        "SPARK_SENSITIVITY_INPUT": "/lake/in/{ds}/emb",
        "SPARK_SENSITIVITY_OUTPUT": "/lake/out/{ds}",
        "SPARK_SENSITIVITY_K": "50",
        "SPARK_SENSITIVITY_ARGS": "--strategy auto --dedup-eps 0.05",
        "SPARK_SENSITIVITY_EMBED": "true",
        "SPARK_SENSITIVITY_EMBED_ARGS": "--embedder hashing --text-col 'the text'",
        "SPARK_SENSITIVITY_JOB_FILE": "/srv/jobs/select_subset.py",
        "SPARK_SENSITIVITY_CONN_ID": "spark_prod",
        "SPARK_SENSITIVITY_RETRIES": "0",
    }
    dag = _run_dag_file(monkeypatch, env)
    for task in dag.operators.values():
        assert task["conn_id"] == "spark_prod" and task["retries"] == 0
    select = dag.operators["select_subset"]
    assert _render(select["application"], dag.defaults, "2026-11-02") == "/srv/jobs/select_subset.py"
    route, xcom = _plan(dag, dag.defaults, "2026-11-02")
    assert route == ["embed", "select_subset"]
    assert check_job_args(xcom["embed"], "airflow_dag.py", command="embed").text_col == "the text"
    args = check_job_args(xcom["select"], "airflow_dag.py")
    assert (args.input, args.output, args.k, args.dedup_eps) == (
        "/lake/in/2026-11-02/emb",
        "/lake/out/2026-11-02",
        50,
        0.05,
    )


def _yarn_command(extra: list[str], **env: str) -> list[str]:
    result = subprocess.run(
        ["bash", str(DEPLOY / "submit_yarn.sh"), *extra],
        env={**os.environ, "PRINT_ONLY": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def test_yarn_submit_script():
    assert subprocess.run(["bash", "-n", str(DEPLOY / "submit_yarn.sh")]).returncode == 0
    command = _yarn_command(["--drop-vector"], INPUT="s3://bucket/embeddings", OUTPUT="hdfs:///subsets/1")
    assert command[:5] == ["spark-submit", "--master", "yarn", "--deploy-mode", "cluster"]
    assert command[command.index("--py-files") + 1].endswith("/spark_sensitivity.zip")
    job = command.index(str(REPO / "jobs" / "select_subset.py"))
    args = check_job_args(command[job + 1 :], "submit_yarn.sh")
    assert args.input == "s3://bucket/embeddings" and args.drop_vector

    packed = _yarn_command([], INPUT="a", OUTPUT="b", PYTHON_ENV="env.tar.gz", DEPLOY_MODE="client")
    assert "env.tar.gz#environment" in packed
    assert "spark.pyspark.python=./environment/bin/python" in packed
    assert "spark.pyspark.driver.python=python3" in packed

    missing = subprocess.run(
        ["bash", str(DEPLOY / "submit_yarn.sh")],
        env={key: value for key, value in os.environ.items() if key not in ("INPUT", "OUTPUT")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "set INPUT" in missing.stderr


def test_databricks_job():
    job = json.loads((DEPLOY / "databricks_job.json").read_text())
    assert len(job["schedule"]["quartz_cron_expression"].split()) in (6, 7)
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    (task,) = job["tasks"]
    # The JVM-side publishing needs dedicated (single user) access mode.
    assert clusters[task["job_cluster_key"]]["data_security_mode"] == "SINGLE_USER"
    wheel_task = task["python_wheel_task"]
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts[wheel_task["entry_point"]] == "spark_sensitivity.cli:main"
    assert wheel_task["package_name"] == "spark_sensitivity"
    command, *args = wheel_task["parameters"]
    assert command == "select"
    check_job_args(args, "databricks_job.json")
    version = metadata.version(DISTRIBUTION)
    (library,) = task["libraries"]
    assert Path(library["whl"]).name == f"spark_sensitivity-{version}-py3-none-any.whl"


def test_databricks_serverless_job():
    """Serverless compute runs the job through Spark Connect: no cluster, an environment instead."""
    job = json.loads((DEPLOY / "databricks_serverless_job.json").read_text())
    assert "job_clusters" not in job and len(job["schedule"]["quartz_cron_expression"].split()) in (6, 7)
    environments = {e["environment_key"]: e["spec"] for e in job["environments"]}
    (task,) = job["tasks"]
    assert "job_cluster_key" not in task
    (wheel,) = environments[task["environment_key"]]["dependencies"]
    assert Path(wheel).name == f"spark_sensitivity-{metadata.version(DISTRIBUTION)}-py3-none-any.whl"
    wheel_task = task["python_wheel_task"]
    command, *args = wheel_task["parameters"]
    assert command == "select" and wheel_task["entry_point"] == "spark-sensitivity"
    check_job_args(args, "databricks_serverless_job.json")
    # The client publishes through the OS: the output must be a path it sees (a Unity Catalog volume).
    output = args[args.index("--output") + 1]
    assert output.startswith("/Volumes/")


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = dockerfile_instructions(text)
    (base,) = [value for key, value in instructions if key == "FROM"]
    assert ":" in base and not base.endswith(":latest"), f"unpinned base image {base}"
    python = re.match(r"python:(\d+\.\d+)-", base)[1]
    env = dict(re.findall(r"(\w+)=(\S+)", dict(instructions)["ENV"]))
    assert env["SPARK_HOME"] == f"/usr/local/lib/python{python}/site-packages/pyspark"
    args = dict(value.split("=", 1) for key, value in instructions if key == "ARG")
    assert args["SPARK_VERSION"] == pyspark.__version__
    (spark_req,) = [
        Requirement(r) for r in metadata.requires(DISTRIBUTION) if r.startswith("pyspark") and '"spark"' in r
    ]
    assert spark_req.specifier.contains(args["SPARK_VERSION"])

    # Where COPY puts things, following WORKDIR; every source is in the repository and in the context.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    workdir, placed = "/", {}
    for key, value in instructions:
        if key == "WORKDIR":
            workdir = os.path.join(workdir, value)
        elif key == "COPY":
            *sources, dest = value.split()
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: not in the repository"
                assert f"!{src}" in ignore or f"!{src}/**" in ignore, f"{src} is left out of the context"
                target = os.path.normpath(os.path.join(workdir, dest))
                placed[src] = os.path.join(target, Path(src).name) if dest.endswith("/") else target
    assert os.path.join(placed["jobs"], "select_subset.py") == JOB_IN_IMAGE
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    assert entrypoint == [placed["deploy/entrypoint.sh"]]
    assert dict(instructions)["USER"] not in ("root", "0")

    # The default command prints the job's flags: the console script exists and knows them.
    program, *cmd_args = json.loads(dict(instructions)["CMD"])
    assert program in {e.name for e in metadata.entry_points(group="console_scripts")}
    with contextlib.redirect_stdout(io.StringIO()) as shown, pytest.raises(SystemExit) as done:
        build_parser().parse_args(cmd_args)
    assert done.value.code == 0 and "--sample-size" in shown.getvalue()

    (example,) = job_commands(text)  # the docker run example in the header comment
    check_job_args(example, "Dockerfile")


def test_image_entrypoint_follows_spark_kubernetes():
    script = DEPLOY / "entrypoint.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    passed = subprocess.run(
        ["bash", str(script), "python", "-c", "print('ran')"], capture_output=True, text=True, timeout=60
    )
    assert passed.stdout == "ran\n", passed.stderr

    # The executor's command: its flags, and the variables Spark sets on executor pods, must be the
    # ones this Spark's Kubernetes executor uses.
    text = script.read_text()
    executor = text[text.index("java_opts=()") : text.index("  *)")]
    (jar,) = (Path(pyspark.__file__).parent / "jars").glob("spark-kubernetes_*.jar")
    with zipfile.ZipFile(jar) as classes:
        main_class = re.search(r"org\.apache\.spark\.[\w.]+KubernetesExecutorBackend", executor)[0]
        backend = classes.read(main_class.replace(".", "/") + "$.class")
        constants = classes.read("org/apache/spark/deploy/k8s/Constants$.class")
    flags = re.findall(r"(--[\w-]+) \"\$", executor)
    assert len(flags) == 7 and all(flag.encode() in backend for flag in flags), flags
    variables = set(re.findall(r"\$\{!?(SPARK_[A-Z_]+)", executor))
    assert {"SPARK_DRIVER_URL", "SPARK_JAVA_OPT_"} <= variables
    assert all(name.encode() in constants for name in variables), variables


def test_readme_examples():
    text = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    examples = [args for block in blocks for args in job_commands(block)]
    assert examples, "no example runs the job"
    for args in examples:
        check_job_args(args, "deploy/README.md")
