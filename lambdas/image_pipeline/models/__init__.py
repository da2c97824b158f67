"""Bedrock image models as adapters in one registry, chosen by configuration."""
