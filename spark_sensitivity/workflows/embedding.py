"""The run's embedder settings applied to a table: the input's rows, and a --target's like them."""

from __future__ import annotations

from pyspark.sql import DataFrame

from spark_sensitivity.embedders import EmbedReport, embed_frame
from spark_sensitivity.settings import SelectConfig


def embed_like_input(raw: DataFrame, config: SelectConfig, on_invalid: str) -> tuple[DataFrame, EmbedReport]:
    """``raw`` embedded (lazily) with the run's --embedder settings into --vector-col."""
    return embed_frame(
        raw, id_col=config.id_col, output_col=config.vector_col, on_invalid=on_invalid, **config.embedding
    )
