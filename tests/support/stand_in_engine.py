"""A stand-in engine for supervisor tests: a stdlib HTTP server answering GET /health on loopback.

It prints loading lines like a model server, and can misbehave on request: never become healthy,
exit during start, ignore SIGTERM, or spawn a grandchild (a vLLM worker's stand-in) that shares its
process group and output.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("serve", "never-healthy", "exit"), default="serve")
    parser.add_argument("--exit-code", type=int, default=3)
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    args = parser.parse_args()

    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild too
    if args.grandchild:
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(f"grandchild {worker.pid}", flush=True)
    print("loading weights 1/2", flush=True)
    print("loading weights 2/2", flush=True)
    if args.mode == "exit":
        print("giving up", flush=True)
        sys.exit(args.exit_code)

    healthy = args.mode == "serve"

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if healthy and self.path == "/health" else 503
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Health)
    print(f"listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
