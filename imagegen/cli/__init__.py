"""The command line: ``imagegen generate``, ``serve``, ``submit``, ``batch`` (entry ``imagegen.cli.main``)."""
