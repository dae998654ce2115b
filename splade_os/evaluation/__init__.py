"""Evaluation: retrieval quality on a BEIR collection, and `tune`, which measures two-phase settings on an index."""
