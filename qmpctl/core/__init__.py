"""Lowest layer: the error tree, verdicts and units every other layer shares."""
