"""Call a Flask app's ``POST /api/tokens`` in process, N times: the issuer's work without sockets.

``python -m bench.wsgi_calls issuer|bare_flask N`` builds ``wsauth.issuer:create_app()``
(settings from the ``WSAUTH_*`` environment, a real Redis) or
``bench.bare:create_app()`` and calls it as a WSGI server would, with the
HTTP Basic credentials of ``WSAUTH_BENCH_BASIC``; every answer must be 200.
``bench/instructions.py`` runs it under callgrind.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from typing import Any

KINDS = ("bare_flask", "issuer")


def _environ(basic: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/tokens", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0), "CONTENT_LENGTH": "0", "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Basic {basic}", "REMOTE_ADDR": "127.0.0.1",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    kind, count = (argv or sys.argv[1:])[:2]
    if kind not in KINDS:
        raise SystemExit(f"kind must be one of {KINDS}")
    if kind == "issuer":
        from wsauth.issuer import create_app
    else:
        from bench.bare import create_app
    app = create_app()
    basic = os.environ["WSAUTH_BENCH_BASIC"]
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[..., Any]:
        statuses.append(status)
        return lambda data: None

    for _ in range(int(count)):
        b"".join(app(_environ(basic), start_response))
    refused = [status for status in statuses if not status.startswith("200")]
    if refused:
        raise SystemExit(f"{len(refused)} answers were not 200: {refused[:3]}")
    print(f"{kind}: {len(statuses)} answers, all 200", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
