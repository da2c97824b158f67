"""The Bedrock stand-in: a local server that speaks InvokeModel, with faults and placeholder renders."""
