"""Results files (CompressAI-format RD JSON, per-image CSV) and what is made from them: BD-rate,
RD plots, the caption-sensitivity table, provenance (docs/evaluation.md)."""
