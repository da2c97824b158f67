"""Plain logic shared by the handlers, the offline runtime and the CLI."""
