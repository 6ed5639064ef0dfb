"""Run ids, and the {run_id} and {date} placeholders of an output path (every job's --output)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Any, TypeVar

Config = TypeVar("Config", bound=Any)

# A run id names a folder: letters, digits and . _ : + = @ - only (Airflow's run ids fit).
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=@-]*")


def resolve_output(config: Config) -> Config:
    """Fills in the run id (new when not given) and the {run_id} and {date} placeholders of --output.

    In the path a run id's colons become '-': Hadoop reads 'a:b' at the start of a path as a scheme.
    """
    now = dt.datetime.now(dt.timezone.utc)
    run_id = config.run_id or f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    if not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"--run-id {run_id!r} must be letters, digits and . _ : + = @ - (no '/' or '..'), starting "
            "with a letter or digit"
        )
    folder = run_id.replace(":", "-")
    output = config.output.replace("{run_id}", folder).replace("{date}", f"{now:%Y-%m-%d}")
    return dataclasses.replace(config, run_id=run_id, output=output)
