#!/usr/bin/env python3
"""The CDK app: read the ``imagegen:*`` context, build the stack. ``cdk synth`` / ``cdk deploy`` run this.

The CDK CLI passes cdk.json's context (and ``-c`` overrides) itself; run as ``python3 app.py`` (no
CDK_OUTDIR set by the CLI), the app reads cdk.json's context so the output is the same.
"""

import os

import aws_cdk as cdk

from stacks.config import ImagegenConfig, cdk_json_context
from stacks.imagegen_stack import ImagegenStack

app = cdk.App(context=None if "CDK_OUTDIR" in os.environ else cdk_json_context())
ImagegenStack(
    app,
    app.node.try_get_context("imagegen:stackName") or "Imagegen",
    config=ImagegenConfig.from_context(app.node),
    env=cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    ),
)
app.synth()
