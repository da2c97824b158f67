"""``imagegen jobs list|cancel|retry``: the caller's jobs on an API (``GET /jobs``, ``DELETE /jobs/{id}``,
``POST /jobs/{id}/retry``), with the same ``--api`` and ``--api-key`` as the other client commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imagegen.cli.api_commands import _add_api_options, _client, _print_json
from imagegen.cli.options import EXIT_OK, examples, wants_json
from imagegen.cli.outputs import format_table

#: The statuses ``GET /jobs`` filters on (image_pipeline.core.job_control.LIST_STATUSES).
LIST_STATUSES = ("running", "cancelling", "succeeded", "cancelled", "failed")


def add_commands(subparsers: Any) -> None:
    jobs = subparsers.add_parser(
        "jobs",
        help="list, cancel or retry your jobs on an API",
        epilog=examples(
            "imagegen jobs list --status failed", "imagegen jobs retry ID", "imagegen jobs cancel ID"
        ),
    )
    actions = jobs.add_subparsers(dest="action", required=True)

    listing = actions.add_parser(
        "list",
        help="your jobs, newest first (GET /jobs)",
        description="Your jobs, newest first: a table on a terminal, JSON when piped or with --json.",
        epilog=examples("imagegen jobs list --status failed --limit 5", "imagegen jobs list --all --json"),
    )
    listing.add_argument("--status", choices=LIST_STATUSES, help="only jobs with this status")
    listing.add_argument("--limit", type=int, default=20, help="jobs per page, 1-100")
    listing.add_argument("--next-token", help="the next page: the next_token of the last answer")
    listing.add_argument("--all", action="store_true", help="follow next_token to the last page")
    _add_api_options(listing)
    listing.set_defaults(func=cmd_list)

    cancel = actions.add_parser(
        "cancel",
        help="cancel a running job (DELETE /jobs/{id})",
        description="The job stops starting images; those already being made are stored and listed in "
        "its manifest, which says cancelled.",
        epilog=examples("imagegen jobs cancel 6f1c..."),
    )
    cancel.add_argument("job_id")
    _add_api_options(cancel)
    cancel.set_defaults(func=cmd_cancel)

    retry = actions.add_parser(
        "retry",
        help="a new job of a job's failed images, same seeds (POST /jobs/{id}/retry)",
        description="Makes again the images of an ended job that failed (throttled, timed out, "
        "cancelled, ...), with their seeds and file names, in a new job; prints the new job.",
        epilog=examples("imagegen jobs retry 6f1c... && imagegen wait NEW_ID --out out/"),
    )
    retry.add_argument("job_id")
    retry.add_argument("--include-filtered", action="store_true", help="also the images the filter stopped")
    _add_api_options(retry)
    retry.set_defaults(func=cmd_retry)


#: The columns of ``jobs list`` on a terminal (an API that does not say a job's prompt or counts leaves
#: those columns out).
JOB_COLUMNS = [
    ("job_id", "JOB"),
    ("status", "STATUS"),
    ("started_at", "STARTED"),
    ("images", "IMAGES"),
    ("model", "MODEL"),
    ("prompt", "PROMPT"),
]


def _row(job: dict[str, Any]) -> dict[str, Any]:
    """A job as ``jobs list`` shows it: images made of those asked, the prompt cut to 40 characters."""
    prompt = job.get("prompt")
    count, made = job.get("count"), job.get("succeeded")
    images = f"{made}/{count}" if made is not None and count else count
    shown = prompt if prompt is None or len(prompt) <= 40 else prompt[:39] + "…"
    return {**job, "images": images, "prompt": shown}


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (key, heading)
        for key, heading in JOB_COLUMNS
        if any(row.get(key) is not None for row in rows) or key in {"job_id", "status"}
    ]


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as api:
        page = api.jobs(status=args.status, limit=args.limit, next_token=args.next_token)
        jobs = list(page["jobs"])
        while args.all and page["next_token"]:
            page = api.jobs(status=args.status, limit=args.limit, next_token=page["next_token"])
            jobs.extend(page["jobs"])
    next_token = None if args.all else page["next_token"]
    if wants_json(args):
        _print_json({"jobs": jobs, "next_token": next_token})
        return EXIT_OK
    rows = [_row(job) for job in jobs]
    print(format_table(rows, _columns(rows)) if rows else "no jobs")
    if next_token:
        print(f"more: imagegen jobs list --next-token {next_token} (or --all)")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as api:
        answer = api.cancel(args.job_id)
    if wants_json(args):
        _print_json(answer)
    else:
        print(f"job {args.job_id} {answer.get('status')}: the images being made are kept")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    with _client(args) as api:
        job = api.retry(args.job_id, include_filtered=args.include_filtered)
    if wants_json(args):
        _print_json(job)
    if not args.quiet or not wants_json(args):
        print(
            f"job {job['job_id']} retries {len(job['images'])} images of {args.job_id}; "
            f"follow it: imagegen wait {job['job_id']}",
            file=sys.stderr if wants_json(args) else sys.stdout,
        )
    return EXIT_OK
