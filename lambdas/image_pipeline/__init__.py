"""Lambda-side package of imagegen: request schema, model adapters, storage naming and the handlers.

Everything here runs unchanged in AWS Lambda and in the offline runtime (``imagegen``).
Runtime dependencies are limited to boto3, pydantic v2 and Powertools for AWS Lambda.
"""
