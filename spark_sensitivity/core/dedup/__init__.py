"""Semantic deduplication inside k-means clusters: the search, its kernel, and the split of giant clusters."""
