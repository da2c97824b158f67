"""The public contract every entry point shares: the request (``request.ImageRequest``) and the named
errors (``errors``). It imports nothing else of the package, so ``models`` and ``core`` both build on
it without importing each other in a circle."""
