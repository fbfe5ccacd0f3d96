"""Start the Streamlit server on the app (`python -m mlops_template ui`): the process becomes Streamlit."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from mlops_template.core.errors import UserError

APP = Path(__file__).with_name("app.py")


def streamlit_argv(host: str, port: int) -> list[str]:
    """`python -m streamlit run` on the app: headless, no usage statistics sent anywhere, no developer menu, and an
    unforeseen exception shown by its type only (the traceback goes to the server's log, never to the page)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
            "--browser.gatherUsageStats=false", "--client.toolbarMode=viewer", "--client.showErrorDetails=type",
            f"--server.address={host}", f"--server.port={port}"]  # fmt: skip


def launch(host: str, port: int) -> None:
    """Replace this process by Streamlit (signals such as SIGTERM then reach it directly)."""
    if importlib.util.find_spec("streamlit") is None:
        raise UserError("streamlit is not installed: `make ui` installs requirements-ui.txt (or pip install -r it)")
    argv = streamlit_argv(host, port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
