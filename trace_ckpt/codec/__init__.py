"""The codec (objects <-> sections): object graph, pandas tables, blobs, workspace files, allowlist."""
