"""The first code a worker process runs (see _launch.py): take the parent's paths, never its main.

Runs as ``python -c "...; from actorflow._boot import main; main()" FD``: FD is the worker's end
of the pipe to the owner, and the first message on it says what the worker needs to know.
"""

from __future__ import annotations

import pickle
import signal
import sys
from multiprocessing import current_process
from multiprocessing.connection import Connection

__all__ = ["main"]


def main() -> None:
    """Entry point of a worker process. Runs in the worker process."""
    # The worker leads its own process group, so the terminal's Ctrl-C never reaches it; a SIGINT
    # sent to it directly ends it like SIGTERM would, without a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    conn = Connection(int(sys.argv[1]))
    try:
        boot = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):
        sys.exit(0)  # the owner went away before the worker started
    sys.path[:] = boot["sys_path"]
    sys.argv[:] = boot["sys_argv"]
    current_process().name = f"actorflow-worker-{boot['index']}"  # logging's %(processName)s
    from . import _child

    _child.worker_main(conn, boot["index"], boot["registry"], boot["max_concurrent"])
