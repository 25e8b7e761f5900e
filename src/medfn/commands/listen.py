"""`medfn listen DIR`: a DICOM Storage SCP whose instances land in DIR/incoming (or an S3 bucket)."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from types import FrameType

HELP = "receive DICOM by C-STORE (a Storage SCP) into DIR/incoming, for `medfn watch DIR`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, nargs="?", help="instances go to DIR/incoming/<study>/<series>/<sop>.dcm")
    parser.add_argument("--ae-title", default="MEDFN", help="this SCP's AE title (the called AE title it answers)")
    parser.add_argument("--port", type=int, default=11112, help="TCP port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument(
        "--calling-ae", action="append", default=[], help="accept associations only from this AE title (repeatable)"
    )
    parser.add_argument("--bucket", help="put instances into this S3 bucket instead of DIR")
    parser.add_argument(
        "--prefix", default="", help="with --bucket: the key prefix (a function's own, e.g. ct_nodules/)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every instance and pynetdicom's messages")


def run(args: argparse.Namespace) -> int:
    from medfn.dicomweb.listen import StoreListener
    from medfn.dicomweb.sinks import FolderSink, InstanceSink, S3Sink
    from medfn.errors import BadRequest

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pynetdicom's own INFO lines are per PDU; keep them for -v
    logging.getLogger("pynetdicom").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if (args.dir is None) == (args.bucket is None):
        raise BadRequest("name a folder (DIR) or --bucket, one of the two")
    sink: InstanceSink = S3Sink(args.bucket, args.prefix) if args.bucket else FolderSink(args.dir)
    listener = StoreListener(sink, args.ae_title, args.host, args.port, args.calling_ae)
    where = f"s3://{args.bucket}/{args.prefix}" if args.bucket else f"{args.dir}/incoming"
    print(f"medfn listen: {args.ae_title} on {args.host}:{args.port}, instances into {where} (Ctrl-C stops)")
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends it as Ctrl-C does
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise BadRequest(f"cannot listen on {args.host}:{args.port} ({exc.strerror or type(exc).__name__})") from exc
    print(f"medfn listen: {listener.stored} stored, {listener.failed} refused")
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
