"""The CDK app's constructs (one module per concern) and the stack that composes them."""
