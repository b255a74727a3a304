"""``python -m sleeping_tuner DIR``: a stand-in chief or worker for ``run_local``'s process tests.

It writes ``DIR/<tuner id>.pid``; as the chief it also listens on KerasTuner's oracle
port (so ``run_local`` starts the workers); then it sleeps until it is ended.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    if tuner_id == "chief":
        server = socket.socket()
        server.bind(("127.0.0.1", int(os.environ["KERASTUNER_ORACLE_PORT"])))
        server.listen()
    Path(sys.argv[1], f"{tuner_id}.pid").write_text(str(os.getpid()))
    time.sleep(600)
