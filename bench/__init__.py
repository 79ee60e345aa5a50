"""Reproducible benchmarks of wsauth: ``make bench`` (``python -m bench``).

What is measured (issue 6), each server in its own process on loopback:

- gateway handshakes: an unauthenticated Tornado WebSocket (the baseline),
  the opaque-ticket design (Redis ``GET`` + JSON + time check) and the real
  wsauth gateway (``wsauth.ws.make_app``), in alternating rounds against one lean
  raw-socket client (:mod:`bench.load`);
- token issuance: ``wsauth.issuer:create_app()`` against a bare Flask JSON endpoint,
  both under gunicorn with 2 sync workers;
- memory per idle authenticated connection (10,000 connections) and Redis
  memory per outstanding token.

Results go to ``bench/results/`` (JSON, Markdown, PNG); see
``docs/performance.md`` for how to read them.
"""
