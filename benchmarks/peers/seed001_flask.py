"""Seed 001, re-created: a Flask API that generates four images per request with a thread pool.

Faithful to the tutorial (``/work/shared/seeds/001_*.txt``, "Building an Asynchronous GenAI Image
Generator API"), minimal otherwise:

* ``POST /generate_images`` with ``prompt``, ``output_folder``, ``file_name_prefix``;
* four file names ``<prefix>-<time.time()>.png``, one ``ThreadPoolExecutor()`` task each (default
  worker count, as in the tutorial);
* each task creates its own ``boto3.client("bedrock-runtime")``, invokes Titan Image Generator v2
  (``quality: premium``, 1024x1024, ``cfgScale: 9``, a random seed, the tutorial's negative prompt),
  decodes the base64 PNG, writes it under a temporary folder, uploads it with a new
  ``boto3.client("s3").upload_file`` (``ContentType: image/png``) and deletes the local copy;
* the answer is ``{"images": [keys]}``.

The tutorial serves the app with gunicorn (5 workers x 2 threads). ``Seed001Server`` serves it with
werkzeug's threaded server in this process and, by default, lets at most 10 requests run at once, the
capacity of that gunicorn configuration (``max_concurrent_requests=None`` removes the limit).

Two deliberate deviations, both to keep the benchmark from failing at random: the tutorial draws
seeds up to 2,147,833,647, above Titan's maximum of 2,147,483,646 (about 1 call in 6,000 would be
rejected), so the draw stops at the maximum; and an existing output folder is not emptied first,
so concurrent requests with the same folder do not delete each other's files.
The endpoint comes from ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` and S3 from the running moto mock: the
same Bedrock stand-in and the same S3 as the engine it is compared with.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

MODEL_ID = "amazon.titan-image-generator-v2:0"
NEGATIVE_PROMPTS = "poorly rendered, poor background details"
MAX_TITAN_SEED = 2_147_483_646
GUNICORN_CAPACITY = 5 * 2  # workers x threads in the tutorial's gunicorn configuration


def ai_image_settings(prompt: str) -> str:
    """The tutorial's request body for Titan Image Generator v2."""
    body = {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": prompt, "negativeText": NEGATIVE_PROMPTS},
        "imageGenerationConfig": {
            "seed": random.randint(0, MAX_TITAN_SEED),
            "numberOfImages": 1,
            "quality": "premium",
            "height": 1024,
            "width": 1024,
            "cfgScale": 9,
        },
    }
    return json.dumps(body, indent=4)


def ai_image_generation(
    prompt: str, local_file_name: str, output_folder: str, *, bucket: str, tmp_path: Path
) -> None:
    """One image: invoke the model, save the PNG locally, upload it to S3, delete the local copy."""
    boto3_bedrock = boto3.client("bedrock-runtime", region_name="us-east-1")
    ai_model = boto3_bedrock.invoke_model(
        body=ai_image_settings(prompt),
        modelId=MODEL_ID,
        accept="application/json",
        contentType="application/json",
    )
    response_body = json.loads(ai_model.get("body").read())
    image_base64 = response_body["images"][0]
    ai_image = base64.b64decode(bytes(image_base64, "utf-8"))
    file_name = tmp_path / output_folder / local_file_name
    file_name.write_bytes(ai_image)
    s3 = boto3.client("s3", region_name="us-east-1")
    key_name = os.path.join(output_folder, local_file_name)
    s3.upload_file(str(file_name), bucket, key_name, ExtraArgs={"ContentType": "image/png"})
    file_name.unlink()


def _validated(data: Any) -> tuple[str, str, str] | str:
    """(prompt, output_folder, file_name_prefix), or the tutorial's error message."""
    values = []
    for name, message in (
        ("prompt", "Invalid prompt."),
        ("output_folder", "Invalid output_folder."),
        ("file_name_prefix", "Invalid file_name_prefix."),
    ):
        try:
            values.append(str(data[name]))
        except (KeyError, TypeError, ValueError):
            return message
    return values[0], values[1], values[2]


def create_app(bucket: str, tmp_path: Path) -> Flask:
    """The tutorial's Flask app, writing to ``bucket`` through a local folder under ``tmp_path``."""
    app = Flask("ai_image_generator")

    @app.get("/health")
    def health() -> Response:
        return jsonify(health="true")

    @app.post("/generate_images")
    def generate_images() -> Any:
        checked = _validated(request.get_json(force=True, silent=True))
        if isinstance(checked, str):
            return jsonify(status=400, description=checked), 400
        prompt, output_folder, file_name_prefix = checked
        (tmp_path / output_folder.strip()).mkdir(parents=True, exist_ok=True)
        with concurrent.futures.ThreadPoolExecutor() as executor:
            file_names = [f"{file_name_prefix}-{time.time()}.png" for _ in range(4)]
            futures = [
                executor.submit(
                    ai_image_generation,
                    prompt=prompt,
                    local_file_name=file,
                    output_folder=output_folder,
                    bucket=bucket,
                    tmp_path=tmp_path,
                )
                for file in file_names
            ]
            for future in concurrent.futures.as_completed(futures):
                future.result()
        return json.dumps({"images": [os.path.join(output_folder, file) for file in file_names]})

    return app


class _CapacityLimit:
    """WSGI middleware: at most ``limit`` requests are served at once, the others wait (as requests
    queue for a free gunicorn worker thread)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.slots = threading.BoundedSemaphore(limit)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        with self.slots:
            return list(self.app(environ, start_response))


class Seed001Server:
    """Serves the app on a free local port in a background thread."""

    def __init__(self, bucket: str, *, max_concurrent_requests: int | None = GUNICORN_CAPACITY) -> None:
        self.bucket = bucket
        self.max_concurrent_requests = max_concurrent_requests
        self._tmp = tempfile.TemporaryDirectory(prefix="seed001-")
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
        app: Any = create_app(self.bucket, Path(self._tmp.name))
        if self.max_concurrent_requests:
            app = _CapacityLimit(app, self.max_concurrent_requests)
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="seed001", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._tmp.cleanup()

    def __enter__(self) -> Seed001Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def post_generate_images(
    url: str, prompt: str, output_folder: str, file_name_prefix: str = "image"
) -> list[str]:
    """What the tutorial's client does (``curl -X POST --data ...``): returns the keys."""
    import urllib.request

    data = json.dumps(
        {"prompt": prompt, "output_folder": output_folder, "file_name_prefix": file_name_prefix}
    )
    req = urllib.request.Request(
        f"{url}/generate_images",
        data=data.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as response:
        return list(json.loads(response.read())["images"])
