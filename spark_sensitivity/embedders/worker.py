"""Per-process state of a Python worker: loaded models, and counters a test or an operator can read.

Spark reuses Python worker processes across tasks and jobs (spark.python.worker.reuse, on by
default), and this module's globals live as long as the process. Each task unpickles a fresh
embedder, so caching the model here, keyed by the embedder's model key, makes it load once per
process instead of once per task or batch.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

# Two models at most: one worker embeds for one job at a time; the second slot spares a reload
# when two embedding runs alternate.
_MAX_MODELS = 2
_models: OrderedDict[Hashable, Any] = OrderedDict()
_loads: Counter[str] = Counter()
_batches: Counter[str] = Counter()


def shared_model(key: Hashable, load: Callable[[], Any]) -> Any:
    """The model for ``key`` in this process, made by ``load()`` on first use only."""
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    model = load()
    _loads[str(key)] += 1
    _models[key] = model
    while len(_models) > _MAX_MODELS:
        _models.popitem(last=False)
    return model


def count_batch(key: Hashable) -> None:
    _batches[str(key)] += 1


def worker_stats() -> dict[str, Any]:
    """This process's id, and per model key: how often it was loaded and how many batches it embedded."""
    return {"pid": os.getpid(), "loads": dict(_loads), "batches": dict(_batches)}
