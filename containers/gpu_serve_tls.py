"""`medfn serve` over HTTPS: the GPU container's start command (containers/gpu.Dockerfile).

    python gpu_serve_tls.py [any `medfn serve` argument]

In AWS the internal NLB re-encrypts to the task (a target group of protocol TLS), so the task
serves HTTPS. It makes its own key and a self-signed certificate at each start (RSA 2048, with
the openssl command line the image installs): the NLB does not validate target certificates,
and the key never leaves the task. The certificate names localhost and 127.0.0.1, so the
container's health check can verify it (cafile = the certificate). The files go to
MEDFN_TLS_DIR (default /srv/.medfn/tls), the key readable by this user alone.

Everything else is `medfn serve` itself, unchanged: its arguments, its app, its workers, with
`--ssl-keyfile` and `--ssl-certfile` naming the files just made.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_TLS_DIR = "/srv/.medfn/tls"
# Long: the NLB checks no expiry, and an expired certificate would fail the health check and
# replace the task. A new task makes a new key anyway.
DAYS = 3650


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A fresh key and self-signed certificate in `directory`: (key, certificate)."""
    old_umask = os.umask(0o077)  # the key is created readable by this user alone
    try:
        directory.mkdir(parents=True, exist_ok=True)
        key, certificate = directory / "key.pem", directory / "cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(DAYS),
             "-subj", "/CN=medfn-gpu-task", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(certificate)],
            check=True,
            capture_output=True,
        )  # fmt: skip
    finally:
        os.umask(old_umask)
    return key, certificate


def main(argv: list[str]) -> int:
    from medfn.commands import serve

    parser = argparse.ArgumentParser(prog="gpu_serve_tls.py", description="medfn serve, over HTTPS")
    serve.add_arguments(parser)
    key, certificate = make_certificate(Path(os.environ.get("MEDFN_TLS_DIR", DEFAULT_TLS_DIR)))
    return serve.run(parser.parse_args([*argv, "--ssl-keyfile", str(key), "--ssl-certfile", str(certificate)]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
