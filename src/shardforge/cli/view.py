"""``shardforge view [--home DIR] [--read-only] [--host 127.0.0.1] [--port 8765]``: serve
the read-only web app over a catalog (:mod:`shardforge.view`) with uvicorn until
interrupted.

The socket is bound before the URL is printed, so the printed URL is live (``--port 0``
picks a free port and prints it). A port in use, or a host that cannot be bound, exits 1
with one line naming the fix; a missing ``view`` extra exits 2 naming the install command.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from shardforge.catalog.home import DEFAULT_HOME, HOME_ENV, READ_ONLY_ENV

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_view_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``view`` to the ``shardforge`` subcommands."""
    p = sub.add_parser("view", help="a local read-only web app: catalog, datasets, class "
                                    "grids, samples (thumbnails read from the shards)")
    p.add_argument("--home", help=f"catalog home (default: ${HOME_ENV}, else {DEFAULT_HOME})")
    p.add_argument("--read-only", action="store_true",
                   help=f"open the catalog without ever writing its home (as {READ_ONLY_ENV}"
                        "=1): for a home on a mounted volume")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv6 when ``host`` has a ':').
    OSError naming the address and the fix when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another "
                      "--port (0 picks a free one) or --host") from None
    return sock


def run_view(args: argparse.Namespace) -> int:
    """Serve the app until Ctrl-C (or SIGTERM); print its URL first. Returns the exit code."""
    try:
        import uvicorn

        from shardforge.view.app import create_app
    except ImportError as exc:
        print(f"shardforge view: error: {exc.name or exc} is not installed; install the "
              "web app's packages with `pip install 'shardforge[view]'`", file=sys.stderr)
        return 2
    from shardforge.catalog.home import resolve_home
    from shardforge.catalog.store import Store

    home = resolve_home(args.home)
    if args.read_only:
        os.environ[READ_ONLY_ENV] = "1"     # every Store the app opens, until the process ends
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        print(f"shardforge view: error: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"shardforge view: catalog {Store(home).path}", flush=True)
    print(f"shardforge view: serving http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    if args.host not in _LOOPBACK:
        print(f"shardforge view: note: {args.host} may be reachable from other machines; the "
              "app is read-only and has no login", flush=True)
    config = uvicorn.Config(create_app(home), log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
