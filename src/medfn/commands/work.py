"""`medfn work --queue-url URL`: settle the scans an SQS upload queue announces, as the GPU scan
workers in AWS do (medfn.sources.queue_worker; docs/gpu.md, "GPU scan workers")."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

HELP = "take scans from an SQS upload queue (long poll, batches across messages), as AWS's GPU scan workers do"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from medfn.commands.watch import add_device_argument

    parser.add_argument(
        "--queue-url",
        default=os.environ.get("MEDFN_QUEUE_URL"),
        help="the function's upload queue (default: $MEDFN_QUEUE_URL)",
    )
    parser.add_argument(
        "--function", help="the function whose model analyses the scans (default: the one with uploads)"
    )
    parser.add_argument("--functions", help="folder of functions/*/function.toml (default: ./functions)")
    add_device_argument(parser)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("MEDFN_WORK_CONCURRENCY", "8")),
        help="messages settled at once, whose scans the model's dynamic batcher runs together",
    )
    parser.add_argument("--wait-s", type=int, default=20, help="long-poll wait of each receive while idle (0-20)")
    parser.add_argument(
        "--until-empty", action="store_true", help="stop once the queue is empty and nothing is in hand"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every scan")


def run(args: argparse.Namespace) -> int:
    from medfn.commands.watch import choose_device, stopped_by_signals, upload_function

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.queue_url:
        print("medfn work: give the upload queue with --queue-url (or MEDFN_QUEUE_URL)", file=sys.stderr)
        return 2
    directory = upload_function(args.functions, args.function)
    refused = choose_device(args.device)
    if refused:
        print(f"medfn work: {refused}", file=sys.stderr)
        return 2

    import boto3

    from medfn.errors import MedfnError
    from medfn.function import load_function
    from medfn.sources._uploads import UploadSource
    from medfn.sources.queue_worker import QueueWorker

    function = load_function(directory)
    model = function.plane.get(function.config.model)
    try:
        model.ensure_ready()
    except MedfnError as exc:  # every scan would fail (or, with --device cuda, run on the CPU): say so once
        print(f"medfn work: {exc.message}", file=sys.stderr)
        return 1
    function.plane.start_batchers()  # the scans of concurrent messages share session runs
    try:
        source = UploadSource(function)
        worker = QueueWorker(source.settle, args.queue_url, boto3.client("sqs"), args.concurrency, args.wait_s)
        print(f"medfn work: {function.config.name} on {model.device.label if model.device else 'cpu'}, "
              f"{args.concurrency} at once, from {args.queue_url}", file=sys.stderr)  # fmt: skip
        with stopped_by_signals("medfn work") as stop:
            summary = worker.run(stop.is_set, until_empty=args.until_empty)
    finally:
        function.plane.stop_batchers()
    print(json.dumps(summary.as_dict()))
    return 0
