"""`medfn watch DIR`: process the scans in DIR/incoming, and those that arrive, as S3 uploads are."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

HELP = "process scans dropped into DIR/incoming: results in DIR/results, poison in DIR/quarantine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", type=Path, help="the folder: incoming/, results/, quarantine/ and status.sqlite3 live here"
    )
    parser.add_argument(
        "--function", help="the function whose model analyses the scans (default: the one with uploads)"
    )
    parser.add_argument("--functions", help="folder of functions/*/function.toml (default: ./functions)")
    parser.add_argument("--once", action="store_true", help="process what is there now, then exit")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks for new files")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds a file must be unchanged before it is read")
    parser.add_argument("--fhir", action="store_true", help="also write a FHIR R4 DiagnosticReport per scan")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every scan")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    from medfn.pipeline.folder_storage import watch_lock

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    directory = upload_function(args.functions, args.function)
    refused = choose_device(args.device)
    if refused:
        print(f"medfn watch: {refused}", file=sys.stderr)
        return 2
    # One watcher per folder: a second is refused here, before it loads a model or touches
    # DIR (FolderStorage removes the partial files a killed watcher left: a live one's must
    # not go with them). The lock is the kernel's, released when this process ends.
    with watch_lock(args.dir):
        return _watch(args, directory)


def upload_function(functions: str | None, name: str | None) -> Path:
    """The folder of the function named, or of the only one that takes uploads."""
    from medfn.config import discover_functions
    from medfn.errors import BadRequest, NotFound
    from medfn.gateway import functions_dir

    every = discover_functions(functions_dir(functions))
    configs = [c for c in every if c.uploads]
    names = ", ".join(c.name for c in configs) or "none"
    if name is not None and name not in {c.name for c in every}:
        raise NotFound(f"no function named {name!r}; these take uploads: {names}")
    if name is not None and name not in {c.name for c in configs}:
        raise BadRequest(f"{name} does not take uploads; these do: {names}")
    chosen = [c for c in configs if name in (None, c.name)]
    if len(chosen) != 1:
        raise BadRequest(f"name one function with --function; these take uploads: {names}")
    assert chosen[0].directory is not None
    return chosen[0].directory


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where the model runs: cuda (refused, never a CPU fallback, without a usable GPU), cpu, "
        "or auto (CUDA when onnxruntime offers it, else CPU)",
    )


def choose_device(device: str) -> str | None:
    """Set the providers for `device` before the model loads; why it is refused, if it is."""
    from medfn.serving.sessions import use_device

    return use_device(device)


def _watch(args: argparse.Namespace, directory: Path) -> int:
    from dataclasses import replace

    from medfn.dicomweb.destination import destination_from_env
    from medfn.errors import MedfnError
    from medfn.function import load_function
    from medfn.pipeline.local import open_local_pipeline
    from medfn.pipeline.settings import PipelineSettings

    function = load_function(directory)
    try:
        function.plane.get(function.config.model).ensure_ready()
    except MedfnError as exc:  # every scan would fail: say so once instead
        print(f"medfn watch: {exc.message}", file=sys.stderr)
        return 1
    settings = PipelineSettings.from_env()
    if args.fhir:
        settings = replace(settings, formats=tuple(dict.fromkeys((*settings.formats, "fhir"))))
    local = open_local_pipeline(
        args.dir,
        function,
        settings,
        destination=destination_from_env(),  # a PACS the DICOM results also go to, when configured
        settle_s=args.settle,
        progress=not args.no_progress,
        once=args.once,
    )
    watch = local.watch
    if not args.once:
        print(f"watching {watch.storage.incoming} (Ctrl-C to stop)", file=sys.stderr)
    try:
        with stopped_by_signals("medfn watch") as stop:
            watch.run(poll_s=args.poll, once=args.once, stop=stop.is_set)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: stopped at once; the summary still follows
    finally:
        local.close()
    print(json.dumps(watch.total.as_dict()))
    return 0


@contextmanager
def stopped_by_signals(command: str) -> Iterator[threading.Event]:
    """Ctrl-C (or SIGTERM) stops after the scan in hand, so that the summary counts exactly
    what was recorded; a second one stops at once. Signals are the main thread's only."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def stopping(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(f"{command}: stopping after the scan in hand (Ctrl-C again to stop now)", file=sys.stderr)

    previous = {number: signal.signal(number, stopping) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
