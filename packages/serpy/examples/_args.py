"""Command-line options shared by the examples (address and port)."""

from __future__ import annotations

import argparse


def parse(description: str, *, server: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="" if server else "localhost")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (servers)")
    return parser.parse_args()
