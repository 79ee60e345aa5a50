"""``python -m bench``: run the benchmarks (``--smoke`` for tiny counts)."""

from bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())
