"""Start the Gradio demo on a free loopback port for a test, and stop it afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "app" / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_demo(checkpoints: dict[str, str]) -> Iterator[str]:
    """Yield the URL of the demo (built like ``cfnet demo``) serving ``checkpoints``."""
    from app.main import build_app, default_examples

    app = build_app(checkpoints, default_examples(), max_side=1024)
    port = free_port()
    app.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        allowed_paths=[str(EXAMPLES)],
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()
