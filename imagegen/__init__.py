"""imagegen: the offline runtime, local servers and command-line interface.

The workflow itself (ASL file and Lambda handlers in ``image_pipeline``) is the same code that runs
in AWS; this package only adapts the environment: moto's Step Functions interpreter runs the ASL,
moto provides S3, Lambda invocations are routed to the handler modules in-process, and a local
server speaks the Bedrock Runtime InvokeModel protocol.
"""

__version__ = "0.1.0"
