"""Minimal, faithful re-creations of the two tutorials the product grew from, measured beside it."""
