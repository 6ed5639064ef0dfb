"""The publishing() context that every job publishes through: whole or nothing, undo steps first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spark_sensitivity.io.publish import PublishError, publishing


def test_the_block_s_parts_and_manifest_appear_together(tmp_path):
    destination = tmp_path / "out"
    with publishing(None, str(destination), overwrite=False, manifest_name="_manifest.json") as job:
        job.output.write_text("part/a.txt", "a")
        assert not destination.exists()
        job.manifest = {"rows": 1}
    assert (destination / "part" / "a.txt").read_text() == "a"
    assert json.loads((destination / "_manifest.json").read_text()) == {"rows": 1}
    assert (destination / "_PUBLISHED").exists()


def test_a_failure_undoes_the_registered_steps_then_removes_the_staging_folder(tmp_path):
    destination = tmp_path / "out"
    undone = []
    with pytest.raises(RuntimeError, match="boom"), publishing(None, str(destination), False) as job:
        job.output.write_text("part.txt", "x")
        # An undo step (a table commit) runs while the staged files are still there.
        job.on_abort(lambda: undone.append(Path(job.output.staging).exists()))
        raise RuntimeError("boom")
    assert undone == [True]
    assert not destination.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_block_without_a_manifest_publishes_nothing(tmp_path):
    with (
        pytest.raises(PublishError, match="no manifest"),
        publishing(None, str(tmp_path / "out"), False) as job,
    ):
        job.output.write_text("part.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_the_destination_is_checked_before_the_block_runs(tmp_path):
    (tmp_path / "out").mkdir()
    with (
        pytest.raises(FileExistsError, match="already exists"),
        publishing(None, str(tmp_path / "out"), False),
    ):
        pytest.fail("the block must not run")
