"""The DBOS side of asking for a segment: a client on the system tables, and what it writes.

Imported only when a segment is asked for (``run``, ``approve``, ``resume`` on postgres, the portal
and the service): ``import dbos`` costs a second or more.
"""

from __future__ import annotations

import logging

from . import APP, APP_VERSION, QUEUE, SCHEMA, WORKFLOW


def client(url: str):
    """A DBOS client on ``url``; the system tables are made first if no worker has made them yet
    (so a run can be queued, or a decision wake its run, before any worker ever started)."""
    logging.getLogger("dbos").setLevel(logging.WARNING)
    from dbos import DBOSClient

    found = DBOSClient(system_database_url=url, application_name=APP, dbos_system_schema=SCHEMA,
                       retry_connection_errors=False)
    with found._sys_db.engine.connect() as con:  # (the client's own pool: no connection of our own)
        present = con.exec_driver_sql("SELECT to_regclass(%s)", (f"{SCHEMA}.workflow_status",)).scalar()
    if present is None:
        found._sys_db.run_migrations()  # what DBOS.launch() does; idempotent, and DBOS serialises it
    return found


def enqueue(dbos_client, workflow_id: str, run_id: str, retry: bool = False) -> None:
    """Queue the segment ``workflow_id`` of ``run_id``; one already there with that id is kept as it is."""
    dbos_client.enqueue({"queue_name": QUEUE, "workflow_name": WORKFLOW, "workflow_id": workflow_id,
                         "app_version": APP_VERSION}, run_id, retry)
