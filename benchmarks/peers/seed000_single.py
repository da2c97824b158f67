"""Seed 000, re-created: one Lambda function, one image per request.

Faithful to the tutorial (``/work/shared/seeds/000_*.txt``, "Building an AI-Powered Image Generation
API with Amazon Bedrock and AWS CDK"), minimal otherwise: the handler reads ``prompt`` from the query
string (or a JSON body), creates a ``bedrock-runtime`` client in ``generate_image`` (as the tutorial
does), invokes Titan Image Generator G1 (``amazon.titan-image-generator-v1``, 1024x1024, one image),
decodes the PNG, puts it to ``IMAGE_SOURCE_BUCKET`` under ``imageName<YYYY-MM-DD-HH-MM-SS>.png`` and
answers ``{"statusCode": 200, "body": <presigned URL valid 1 h>}``.

Like the tutorial, the key has a one-second resolution, so two images made within the same second
overwrite each other; the benchmark keeps that, since it measures time, not storage.

N images are N requests, made one after the other, with the handler called in-process (what an
API Gateway -> Lambda call does, without the network and the API Gateway hop).
"""

from __future__ import annotations

import base64
import json
import os
import random
from datetime import datetime
from typing import Any

import boto3

MODEL_ID = "amazon.titan-image-generator-v1"
ACCEPT = "application/json"
CONTENT_TYPE = "application/json"


def generate_image(model_id: str, body: str) -> bytes:
    bedrock = boto3.client(service_name="bedrock-runtime", region_name="us-east-1")
    response = bedrock.invoke_model(body=body, modelId=model_id, accept=ACCEPT, contentType=CONTENT_TYPE)
    response_body = json.loads(response.get("body").read())
    base64_image = response_body.get("images")[0]
    return base64.b64decode(base64_image)


def _prompt(event: dict[str, Any]) -> str | None:
    query = event.get("queryStringParameters") or {}
    if query.get("prompt"):
        return str(query["prompt"])
    try:
        body = json.loads(event.get("body") or "{}")
    except ValueError:
        return None
    return str(body["prompt"]) if isinstance(body, dict) and body.get("prompt") else None


def index(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda handler (``index.index`` in the tutorial's stack)."""
    prompt = _prompt(event)
    if not prompt:
        return {"statusCode": 400, "body": "prompt is required"}
    body = json.dumps(
        {
            "taskType": "TEXT_IMAGE",
            "textToImageParams": {"text": prompt},
            "imageGenerationConfig": {
                "numberOfImages": 1,
                "height": 1024,
                "width": 1024,
                "cfgScale": 8.0,
                "seed": random.randint(0, 2_147_483_646),
            },
        }
    )
    image_bytes = generate_image(MODEL_ID, body)
    bucket = os.environ["IMAGE_SOURCE_BUCKET"]
    key = f"imageName{datetime.now().strftime('%Y-%m-%d-%H-%M-%S')}.png"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key=key, Body=image_bytes, ContentType="image/png")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
    return {"statusCode": 200, "body": url}


def generate_sequentially(count: int, prompt: str) -> list[str]:
    """``count`` images the only way seed 000 offers: ``count`` requests, one after the other."""
    urls = []
    for _ in range(count):
        answer = index({"queryStringParameters": {"prompt": prompt}}, None)
        if answer["statusCode"] != 200:
            raise RuntimeError(f"seed 000 handler answered {answer}")
        urls.append(answer["body"])
    return urls
