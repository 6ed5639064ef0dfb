"""Selectors the experiments compare with (k-center greedy, margin, entropy, leverage scores, score-proportional draws); the production path does not use them."""
