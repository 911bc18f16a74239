"""The host name an Airflow component reports: ``$PACS_STACK_WORKER`` (one per component).

``make stack-test`` runs both Celery workers on one machine, where ``socket.getfqdn()`` would
give every task instance the same host name. It sets ``[core] hostname_callable`` to
:func:`worker_hostname` and gives each component its own ``PACS_STACK_WORKER``, so that a task
instance's ``hostname`` (in the REST API) says which worker ran it. Imported by the task
processes: standard library only.
"""

from __future__ import annotations

import os
import socket


def worker_hostname() -> str:
    """``$PACS_STACK_WORKER``, else the machine's fully qualified name (Airflow's default)."""
    return os.environ.get("PACS_STACK_WORKER") or socket.getfqdn()
