"""The offline runtime: moto runs the ASL, the handlers run in-process, the local API serves the routes."""
