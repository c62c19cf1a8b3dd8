"""The data layer: objects, the catalog, ingest and SQL (tests under tests/data and tests/services).

- :mod:`.storage`: the object store, one interface over a local directory or S3 (boto3);
  used in-process by every daemon that persists objects.
- :mod:`.catalog`: dataset manifests with idempotent registration (ADR-020), kept as Parquet.
- :mod:`.ingest`: CSV to Snappy Parquet with schema inference, in bounded memory.
- :mod:`.query`: read-only DuckDB SQL over the cataloged datasets.
"""
