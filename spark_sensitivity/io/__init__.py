"""Spark sessions, file systems, table formats (Parquet, Delta, Iceberg, catalog tables), atomic
publishing of an output folder, redaction of secrets, provenance and run lineage."""
