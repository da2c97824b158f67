"""Thin Lambda handlers: Powertools decorators, parse the event, call the logic in ``core``."""
