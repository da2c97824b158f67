"""Scripts run by hand from the repository root (``python -m tools.<name>``)."""
