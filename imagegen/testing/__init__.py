"""Test support (S3 faults, the nothing-lost audit, the bad-input catalogue): used by tests and tools,
never by the command line, the runtime or the stand-in."""
