"""Stand-ins for what the lab does not run: kube-proxy on a node, kube-apiserver on a control-plane VM, a pod.

Each answers HTTP with its own name, so a probe learns which host served it, and exposes the health endpoint
the rendered anycast-healthchecker configuration checks:

- ``proxy``: holds the node's anycast service addresses on ``lo`` while it runs (added at start, removed on
  SIGTERM, as kube-proxy's service addresses are), answers on port 80 of them, and ``/healthz`` on
  127.0.0.1:10256 (kube-proxy's health port).
- ``apiserver``: HTTPS on 6443 with a throwaway self-signed certificate; ``/readyz`` answers ``ok``.
- ``pod``: answers on port 8080 of every address (it runs inside the pod's network namespace).

Run as a script with the lab's Python (``python standin.py proxy NAME ADDR...``); it imports nothing from
provisioner, so it works inside any lab host. It names its process (comm) ``lab-<kind>`` so the lab finds it.
"""

from __future__ import annotations

import ctypes
import http.server
import os
import signal
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
from ipaddress import IPv4Address

PORTS = {"proxy": 80, "apiserver": 6443, "pod": 8080}
PROXY_HEALTH_PORT = 10256


def set_comm(name: str) -> None:
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def handler(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (b"ok\n" if self.path in ("/readyz", "/healthz", "/livez") else f"{name}\n".encode())
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(address: str, port: int, name: str, context: ssl.SSLContext | None = None) -> Server:
    server = Server((address, port), handler(name))
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def self_signed_context(name: str) -> ssl.SSLContext:
    """A throwaway certificate: the health check uses ``curl -k`` as against a real apiserver's /readyz."""
    directory = tempfile.mkdtemp(prefix="lab-apiserver-")
    key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=False, capture_output=True)


def main(argv: list[str]) -> int:
    kind, name, *addresses = argv
    set_comm(f"lab-{kind}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    held: list[str] = []
    if kind == "proxy":
        for a in addresses:
            IPv4Address(a)
            _ip("addr", "replace", f"{a}/32", "dev", "lo")
            held.append(a)
            serve(a, PORTS["proxy"], name)
        serve("127.0.0.1", PROXY_HEALTH_PORT, name)
    elif kind == "apiserver":
        serve("0.0.0.0", PORTS["apiserver"], name, self_signed_context(name))
    elif kind == "pod":
        serve("0.0.0.0", PORTS["pod"], name)
    else:
        print(f"standin: unknown kind {kind!r}", file=sys.stderr)
        return 2
    stop.wait()
    for a in held:
        _ip("addr", "del", f"{a}/32", "dev", "lo")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
