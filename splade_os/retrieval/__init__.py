"""Retrieval: a query vector turned into engine clauses (exact, pruned, two-phase), searches with explanations, and
hybrid fusion with BM25."""
