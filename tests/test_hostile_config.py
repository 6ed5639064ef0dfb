"""Config files and settings written to hurt: alias bombs, huge or binary files, duplicate keys, odd
nesting, a sample size no memory can serve.

Each is refused by one line naming the file (and the key or line), exit 2, quickly and in bounded
memory: the file is read only up to its size limit and no alias is ever expanded.
"""

import pytest

from spark_sensitivity.cli.app import main, parse_args
from spark_sensitivity.cli.config_file import MAX_CONFIG_BYTES, MAX_STRING_CHARS, SHOWN_CHARS
from spark_sensitivity.core.sampling.sample import MAX_DRAWS
from spark_sensitivity.ml.estimator import SensitivitySampler

ALIAS_BOMB = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n" + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def refused(tmp_path, capsys, content, *flags: str) -> str:
    """The one error line for a config file holding ``content`` (text or bytes)."""
    config = tmp_path / "hostile.yaml"
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["select", "--config", str(config), *flags])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("spark-sensitivity")]
    assert len(lines) == 1, lines
    assert f"config file {config}" in lines[0]
    assert len(lines[0]) < 600  # never a value shown in full
    return lines[0]


@pytest.mark.parametrize("where", ["k", "input-option"])
def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path, capsys, where):
    bomb = (
        ALIAS_BOMB.replace("i: &i", f"{where}: &i") if where == "k" else ALIAS_BOMB + f"{where}: {{x: *i}}\n"
    )
    assert "line " in refused(tmp_path, capsys, bomb) and "YAML aliases (*" in refused(tmp_path, capsys, bomb)


def test_a_plain_anchor_without_alias_is_fine(tmp_path):
    config = tmp_path / "anchored.yaml"
    config.write_text("k: &three 3\ninput: x\noutput: y\nsample-size: 5\n")
    assert parse_args(["select", "--config", str(config)]).k == 3


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path, capsys):
    big = "run-id: " + "r" * MAX_CONFIG_BYTES + "\n"
    assert f"larger than {MAX_CONFIG_BYTES // 1024} KiB" in refused(tmp_path, capsys, big)


@pytest.mark.parametrize("key", ["run-id", "input", "output", "id-col"])
def test_every_string_setting_has_a_length_cap(tmp_path, capsys, key):
    line = refused(tmp_path, capsys, f"{key}: {'x' * (MAX_STRING_CHARS + 1)}\n")
    assert f"{key} is {MAX_STRING_CHARS + 1} characters long, more than {MAX_STRING_CHARS}" in line


def test_a_long_option_value_and_a_long_key_are_refused(tmp_path, capsys):
    line = refused(tmp_path, capsys, f"input-option:\n  dburl: {'p' * (MAX_STRING_CHARS + 1)}\n")
    assert "input-option.dburl is" in line
    line = refused(tmp_path, capsys, f"? {'k' * (MAX_STRING_CHARS + 5)}\n: 3\n")  # an explicit key
    assert f"a key of {MAX_STRING_CHARS + 5} characters is too long" in line


def test_a_bad_value_is_shown_cut_short(tmp_path, capsys):
    line = refused(tmp_path, capsys, f"z: {'9' * 3000}\n")
    assert "z must be one of [1, 2]" in line and "9" * (SHOWN_CHARS + 5) not in line
    line = refused(tmp_path, capsys, f"unknown-{'u' * 900}: 1\n")
    assert "unknown setting" in line and "u" * (SHOWN_CHARS + 5) not in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("k: 3\ninput: x\nk: 4\n", "key 'k' is set twice (lines 1 and 3)"),
        ("input-option:\n  sep: ';'\n  sep: ','\n", "key 'sep' is set twice (lines 2 and 3)"),
        ("sample-size: 3\nsample_size: 4\n", "'sample_size' sets --sample-size a second time"),
        ('{"k": 3, "k": 4}', "key 'k' is set twice (lines 1 and 1)"),
    ],
)
def test_duplicate_keys_are_refused(tmp_path, capsys, content, message):
    assert message in refused(tmp_path, capsys, content)


def test_a_mapping_nested_under_input_option_is_refused(tmp_path, capsys):
    line = refused(tmp_path, capsys, "input-option:\n  dburl:\n    user: alice\n")
    assert "input-option.dburl must be a single value, got a mapping of 1 entries" in line
    line = refused(tmp_path, capsys, "input-option:\n  paths: [a, b]\n")
    assert "input-option.paths must be a single value, got a list of 2 entries" in line


def test_a_latin1_file_names_the_file_and_the_key(tmp_path, capsys):
    line = refused(tmp_path, capsys, "k: 3\nrun-id: caf\xe9\n".encode("latin-1"))
    assert "is not UTF-8 (byte 0xe9 in line 2, key 'run-id'); save it as UTF-8" in line


def test_deep_nesting_and_huge_numbers_get_one_line(tmp_path, capsys):
    assert "nests its values too deeply" in refused(tmp_path, capsys, "k: " + "[" * 100_000)
    assert "config file" in refused(tmp_path, capsys, f"k: {'7' * 5000}\n")


def test_a_sample_size_beyond_the_draw_limit_is_refused_before_spark_starts(capsys):
    """2^31 - 1 draws from 3 rows once grew one Python worker to 21 GB: now refused with the flags."""
    argv = ["select", "--input", "three", "--output", "out", "--quiet", "--sample-size", "2147483647"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument --sample-size: must be at most {MAX_DRAWS}" in capsys.readouterr().err


def test_a_library_caller_beyond_the_draw_limit_gets_one_line(spark):
    frame = spark.createDataFrame(
        [(1, [0.0, 1.0]), (2, [1.0, 0.0]), (3, [5.0, 5.0])], "id long, embedding array<double>"
    )
    model = SensitivitySampler(k=2, seed=1, pointsPerCenter=0).fit(frame)
    with pytest.raises(ValueError, match=f"above the limit of {MAX_DRAWS:,} draws"):
        model.sample(2_147_483_647)
    assert model.sample(30).agg({"count": "sum"}).first()[0] == 30  # an m it can serve


def test_refresh_refuses_a_sample_size_beyond_the_limit_before_spark_starts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["refresh", "--model", "m", "--new-input", "n", "--previous-subset", "p", "--output", "o",
                    "--sample-size", str(MAX_DRAWS + 1)])  # fmt: skip
    assert exit_info.value.code == 2
    assert f"--sample-size: must be at most {MAX_DRAWS}" in capsys.readouterr().err
