"""The run's embedder settings applied to a table: the input's rows, and a --target's like them."""

from __future__ import annotations

from pyspark.sql import DataFrame

from spark_sensitivity.embedders import EmbedReport, embed_frame
from spark_sensitivity.settings import SelectConfig


def embed_like_input(raw: DataFrame, config: SelectConfig, on_invalid: str) -> tuple[DataFrame, EmbedReport]:
    """``raw`` embedded (lazily) with the run's --embedder settings into --vector-col."""
    return embed_frame(
        raw,
        embedder=config.embedder,
        id_col=config.id_col,
        text_col=config.text_col,
        image_col=config.image_col,
        output_col=config.vector_col,
        batch_size=config.embed_batch_size,
        on_invalid=on_invalid,
        options=config.embed_options,
    )
