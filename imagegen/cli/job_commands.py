"""``imagegen jobs list|cancel|retry``: the caller's jobs on an API (``GET /jobs``, ``DELETE /jobs/{id}``,
``POST /jobs/{id}/retry``), with the same ``--api`` and ``--api-key`` as the other client commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx

from imagegen.cli.api_commands import _add_api_options, _client, _fail, _print_json
from imagegen.cli.client import ClientApiError
from imagegen.cli.options import EXIT_OK

#: The statuses ``GET /jobs`` filters on (image_pipeline.core.job_control.LIST_STATUSES).
LIST_STATUSES = ("running", "cancelling", "succeeded", "cancelled", "failed")


def add_commands(subparsers: Any) -> None:
    jobs = subparsers.add_parser("jobs", help="list, cancel or retry your jobs on an API")
    actions = jobs.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="your jobs, newest first (GET /jobs)")
    listing.add_argument("--status", choices=LIST_STATUSES, help="only jobs with this status")
    listing.add_argument("--limit", type=int, default=20, help="jobs per page, 1-100 (default 20)")
    listing.add_argument("--next-token", help="the next page: the next_token of the last answer")
    listing.add_argument("--all", action="store_true", help="follow next_token to the last page")
    _add_api_options(listing)
    listing.set_defaults(func=cmd_list)

    cancel = actions.add_parser(
        "cancel",
        help="cancel a running job (DELETE /jobs/{id})",
        description="The job stops starting images; those already being made are stored and listed in "
        "its manifest, which says cancelled.",
    )
    cancel.add_argument("job_id")
    _add_api_options(cancel)
    cancel.set_defaults(func=cmd_cancel)

    retry = actions.add_parser(
        "retry",
        help="a new job of a job's failed images, same seeds (POST /jobs/{id}/retry)",
        description="Makes again the images of an ended job that failed (throttled, timed out, "
        "cancelled, ...), with their seeds and file names, in a new job; prints the new job.",
    )
    retry.add_argument("job_id")
    retry.add_argument("--include-filtered", action="store_true", help="also the images the filter stopped")
    _add_api_options(retry)
    retry.set_defaults(func=cmd_retry)


def cmd_list(args: argparse.Namespace) -> int:
    try:
        with _client(args) as api:
            page = api.jobs(status=args.status, limit=args.limit, next_token=args.next_token)
            if not args.all:
                _print_json(page)
                return EXIT_OK
            jobs = list(page["jobs"])
            while page["next_token"]:
                page = api.jobs(status=args.status, limit=args.limit, next_token=page["next_token"])
                jobs.extend(page["jobs"])
            _print_json({"jobs": jobs, "next_token": None})
            return EXIT_OK
    except (ClientApiError, httpx.HTTPError) as exc:
        return _fail(exc)


def cmd_cancel(args: argparse.Namespace) -> int:
    try:
        with _client(args) as api:
            _print_json(api.cancel(args.job_id))
            return EXIT_OK
    except (ClientApiError, httpx.HTTPError) as exc:
        return _fail(exc)


def cmd_retry(args: argparse.Namespace) -> int:
    try:
        with _client(args) as api:
            job = api.retry(args.job_id, include_filtered=args.include_filtered)
            _print_json(job)
            if not args.quiet:
                print(
                    f"job {job['job_id']} retries {len(job['images'])} images of {args.job_id}",
                    file=sys.stderr,
                )
            return EXIT_OK
    except (ClientApiError, httpx.HTTPError) as exc:
        return _fail(exc)
