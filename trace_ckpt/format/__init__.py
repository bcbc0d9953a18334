"""The on-disk format (bytes): container layout and manifest schema. Spec: docs/format.md."""
