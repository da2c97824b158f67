"""A small HTTP client of the imagegen API: the deployed one (base URL with its stage, ``x-api-key``)
or the local server (``imagegen serve``). The routes and bodies are described in ``docs/api.md``.

    with ImagegenClient("http://127.0.0.1:8000") as api:
        job = api.submit({"prompt": "a red porsche", "count": 4})
        done = api.wait(job["job_id"])
        api.download(done["manifest"], Path("out"))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

import httpx

from imagegen.cli.outputs import write_local_manifest

DEFAULT_API_URL = "http://127.0.0.1:8000"
#: How long ``POST /images`` may take to answer: the API waits at most ~25 s for the images, then
#: answers 202 with the job (``generate`` then polls it).
SYNC_TIMEOUT_SECONDS = 60.0
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class SigV4(httpx.Auth):
    """Signs each API call with AWS Signature Version 4 for API Gateway (service ``execute-api``), for
    a deployment whose methods use IAM authorization (``imagegen:apiAuth=iam``). The signing is
    botocore's ``SigV4Auth`` (the AWS SDK's own), not ours; ``credentials`` is a botocore credentials
    object (``boto3.Session().get_credentials()``), frozen afresh for each call so temporary
    credentials are refreshed. Signed: the method, path, query, body, ``host`` and ``content-type``.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-signing-requests.html (read 2026-11-30)
    """

    requires_request_body = True
    SERVICE = "execute-api"

    def __init__(self, credentials: Any, region: str) -> None:
        self._credentials = credentials
        self.region = region

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = {"host": request.headers["host"]}
        if "content-type" in request.headers:
            headers["content-type"] = request.headers["content-type"]
        signed = AWSRequest(
            method=request.method, url=str(request.url), data=request.content, headers=headers
        )
        frozen = self._credentials.get_frozen_credentials()
        SigV4Auth(frozen, self.SERVICE, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        yield request


class ClientApiError(Exception):
    """An error answer of the API: HTTP status, the error name and message, the fields to change."""

    def __init__(self, status: int, error: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.details = details or []

    @classmethod
    def from_response(cls, response: httpx.Response) -> ClientApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = str(body.get("error") or body.get("message") or response.reason_phrase)
            message = str(body.get("message") or body.get("detail") or response.text[:500])
            return cls(response.status_code, error, message, body.get("details"))
        return cls(response.status_code, response.reason_phrase or "HttpError", response.text[:500])


class ImagegenClient:
    """The API's routes as methods. Errors raise :class:`ClientApiError` (or ``httpx.HTTPError``).
    ``auth`` signs each call (:class:`SigV4` for an IAM-authorized deployment)."""

    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        *,
        api_key: str | None = None,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url, headers=headers, auth=auth, timeout=timeout, transport=transport
        )
        # Image URLs are presigned S3 URLs (or the local server's): never send them the API key.
        self._files = httpx.Client(timeout=timeout, transport=transport, follow_redirects=True)

    def __enter__(self) -> ImagegenClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def _call(self, method: str, path: str, expected: int = 200, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code != expected:
            raise ClientApiError.from_response(response)
        return response.json()

    def generate(
        self, request: dict[str, Any], *, wait: int | None = None, poll: float = 1.0
    ) -> dict[str, Any]:
        """``POST /images``: generate and wait; returns the manifest. ``wait`` is the ``Prefer: wait``
        the API is asked for; when the images take longer, the API answers 202 with the job and this
        polls it (``GET /jobs/{id}``) to its end: the manifest, or :class:`ClientApiError` when it
        failed or was cancelled."""
        headers = {"Prefer": f"wait={wait}"} if wait is not None else {}
        response = self._http.post("images", json=request, headers=headers, timeout=SYNC_TIMEOUT_SECONDS)
        if response.status_code == 200:
            return dict(response.json())
        if response.status_code != 202:
            raise ClientApiError.from_response(response)
        job = self.wait(response.json()["job_id"], poll=poll)
        if job["status"] == "succeeded":
            return dict(job["manifest"])
        error = job.get("error") or {"error": "JobCancelled", "message": f"job {job['job_id']} was cancelled"}
        raise ClientApiError(409 if job["status"] == "cancelled" else 502, error["error"], error["message"])

    def submit(self, request: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /jobs``: start a job; returns ``{"job_id", "status", "status_url"}``."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "jobs", expected=202, json=request, headers=headers)

    def status(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: status, progress, and the manifest (fresh URLs) or the error."""
        return self._call("GET", f"jobs/{job_id}")

    def jobs(
        self, *, status: str | None = None, limit: int | None = None, next_token: str | None = None
    ) -> dict[str, Any]:
        """``GET /jobs``: one page of the caller's jobs, newest first (``{"jobs", "next_token"}``)."""
        params = {"status": status, "limit": limit, "next_token": next_token}
        return self._call("GET", "jobs", params={k: v for k, v in params.items() if v is not None})

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``DELETE /jobs/{id}``: cancel a running job; returns ``{"job_id", "status": "cancelling", ...}``."""
        return self._call("DELETE", f"jobs/{job_id}", expected=202)

    def retry(self, job_id: str, *, include_filtered: bool = False) -> dict[str, Any]:
        """``POST /jobs/{id}/retry``: a new job of the images that failed (and filtered, when asked)."""
        body = {"include_filtered": True} if include_filtered else None
        return self._call("POST", f"jobs/{job_id}/retry", expected=202, json=body)

    def models(self) -> dict[str, Any]:
        """``GET /models``: the registry and what this deployment offers."""
        return self._call("GET", "models")

    def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 1.0,
        timeout: float = 900.0,
    ) -> dict[str, Any]:
        """Poll a job until it succeeds or fails; ``on_progress(job)`` when its status or progress
        changes. Returns the last job document (check ``status``); TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while True:
            job = self.status(job_id)
            key = (job.get("status"), json.dumps(job.get("progress"), sort_keys=True))
            if on_progress is not None and key != seen:
                on_progress(job)
            seen = key
            if job.get("status") in FINISHED:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.get('status')} after {timeout} s")
            time.sleep(poll)

    def events(
        self, job_id: str, *, last_event_id: int = 0, timeout: float = 900.0
    ) -> Iterator[dict[str, Any]]:
        """``GET /jobs/{id}/events``: the job's Server-Sent Events as ``{"id", "event", "data"}``, to its
        end event (``completed``, ``cancelled`` or ``failed``, whose data is the job document). The local
        server keeps one stream open; the deployed API answers a batch at a time, so this asks again
        after the batch's ``retry:`` with ``Last-Event-ID``. TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        last, retry = last_event_id, 2.0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last:
                headers["Last-Event-ID"] = str(last)
            # The read timeout ends a stream that stays silent past the deadline (httpx.ReadTimeout).
            read = httpx.Timeout(30.0, read=max(deadline - time.monotonic(), 1.0))
            try:
                stream = self._http.stream("GET", f"jobs/{job_id}/events", headers=headers, timeout=read)
                with stream as response:
                    if response.status_code == 204:
                        return
                    if response.status_code != 200:
                        response.read()
                        raise ClientApiError.from_response(response)
                    for event in _server_sent_events(response.iter_lines()):
                        if "retry" in event and str(event["retry"]).isdigit():
                            retry = int(event["retry"]) / 1000
                        if "event" not in event:
                            continue
                        if str(event.get("id", "")).isdigit():
                            last = int(event["id"])
                        yield event
                        if event["event"] != "image":
                            return
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"job {job_id} has not ended after {timeout} s")
            except httpx.ReadTimeout:
                raise TimeoutError(f"job {job_id} has not ended after {timeout} s") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} has not ended after {timeout} s")
            time.sleep(retry)

    def follow(
        self,
        job_id: str,
        *,
        on_image: Callable[[dict[str, Any]], None],
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 1.0,
        timeout: float = 900.0,
    ) -> dict[str, Any]:
        """Wait for a job as its images arrive: ``on_image(image)`` for each image as it is stored (or
        filtered, or failed), from ``GET /jobs/{id}/events``; returns the job document of its end. An API
        without the events route (an older deployment) is polled instead (:meth:`wait`)."""
        try:
            for event in self.events(job_id, timeout=timeout):
                if event["event"] == "image":
                    on_image(event["data"])
                else:
                    return dict(event["data"])
        except ClientApiError as exc:
            if exc.error == "JobNotFound" or exc.status not in {403, 404, 405}:
                raise
        return self.wait(job_id, on_progress=on_progress, poll=poll, timeout=timeout)

    def download(self, manifest: dict[str, Any], out_dir: Path) -> list[Path]:
        """Fetch each image of ``manifest`` from its URL into ``out_dir``, and write a local
        ``manifest.json`` beside them (:func:`write_local_manifest`). Returns the images."""
        out_dir.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        for image in manifest.get("images", []):
            url = image.get("url")
            if not url or not image.get("key"):
                continue
            name = PurePosixPath(image["key"]).name
            if name in {"", ".", ".."} or "\\" in name:
                raise ValueError(f"refusing to write image key {image['key']!r}")
            response = self._files.get(url)
            if response.status_code != 200:
                raise ClientApiError.from_response(response)
            target = out_dir / name
            target.write_bytes(response.content)
            files[image["key"]] = target
        write_local_manifest(manifest, files, out_dir)
        return list(files.values())


def _server_sent_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The events of a ``text/event-stream``, one dict of fields each (``data`` parsed as JSON)."""
    fields: dict[str, Any] = {}
    for line in lines:
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = json.loads(value) if name == "data" else value
    if fields:
        yield fields
