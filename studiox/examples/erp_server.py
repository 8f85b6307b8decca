"""An example ERP system as an MCP server, backed by one SQLite file.

    python -m studiox.examples.erp_server [--db FILE] [--http PORT]

Over stdio by default (the way missions start it), or streamable HTTP on 127.0.0.1 with
``--http``. The database (``--db``, else ``$ERP_DB``, else ``erp.sqlite`` in the working
folder) is created with sample cost centres, purchase orders and one earlier payment on first use
(INV-2107, so that the example's duplicate invoice meets a payment the ERP already booked).

Tools: ``check_budget`` and ``list_payments`` (read-only), ``get_purchase_order``
(read-only), ``post_payment`` (changes state; idempotent: a repeated idempotency key, sent by
studiox in the request's ``_meta`` as ``studiox/idempotency_key``, returns the first payment
and never books a second one).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import time

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

IDEMPOTENCY_KEY = "studiox/idempotency_key"

SCHEMA = """
CREATE TABLE IF NOT EXISTS cost_centres (
    code TEXT PRIMARY KEY, name TEXT NOT NULL, budget REAL NOT NULL, spent REAL NOT NULL);
CREATE TABLE IF NOT EXISTS purchase_orders (
    number TEXT PRIMARY KEY, supplier TEXT NOT NULL, cost_centre TEXT NOT NULL, total REAL NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY, invoice_number TEXT NOT NULL, po_number TEXT NOT NULL, amount REAL NOT NULL,
    cost_centre TEXT NOT NULL, idempotency_key TEXT UNIQUE, posted_at REAL NOT NULL);
"""
SAMPLE_COST_CENTRES = [("CC-410", "Facilities", 25_000.0, 22_400.0), ("CC-220", "Marketing", 60_000.0, 12_000.0),
                       ("CC-900", "Research", 5_000.0, 4_900.0)]
SAMPLE_ORDERS = [("PO-1042", "Nordlicht Office Supplies GmbH", "CC-410", 1_780.0),
                 ("PO-2077", "Brightline Events Ltd", "CC-220", 9_450.0),
                 ("PO-3001", "Employee expense reimbursements", "CC-220", 50_000.0),
                 ("PO-0987", "Nordlicht Office Supplies GmbH", "CC-410", 640.0),
                 ("PO-4120", "Helix Labware GmbH", "CC-900", 1_240.0)]
# Booked before studiox (already counted in what CC-410 spent); its own key makes the seeding happen once,
# even when two servers open a new database at the same moment.
SAMPLE_PAYMENTS = [("INV-2107", "PO-0987", 640.0, "CC-410", "erp-sample/INV-2107", 1_790_772_000.0)]


def open_db(path: str | os.PathLike) -> sqlite3.Connection:
    """The ERP database, with the sample cost centres, orders and payment it lacks (what was spent is kept)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.executescript(SCHEMA)
    db.executemany("INSERT OR IGNORE INTO cost_centres VALUES (?, ?, ?, ?)", SAMPLE_COST_CENTRES)
    db.executemany("INSERT OR IGNORE INTO purchase_orders VALUES (?, ?, ?, ?)", SAMPLE_ORDERS)
    db.executemany("INSERT OR IGNORE INTO payments (invoice_number, po_number, amount, cost_centre, idempotency_key, "
                   "posted_at) VALUES (?, ?, ?, ?, ?, ?)", SAMPLE_PAYMENTS)
    return db


def build_server(db_path: str | os.PathLike, pay_delay: float = 0.0) -> MCPServer:
    server = MCPServer("example-erp", instructions="An example ERP: budgets, purchase orders and payments.")

    def cost_centre(db: sqlite3.Connection, code: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM cost_centres WHERE code = ?", (code,)).fetchone()
        if row is None:
            known = ", ".join(r["code"] for r in db.execute("SELECT code FROM cost_centres ORDER BY code"))
            raise ToolError(f"unknown cost centre '{code}' (known: {known})")
        return row

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def check_budget(cost_centre_code: str, amount: float) -> dict:
        """Whether a cost centre has budget left for an amount, and what would remain."""
        with open_db(db_path) as db:
            row = cost_centre(db, cost_centre_code)
        remaining = round(row["budget"] - row["spent"], 2)
        return {"cost_centre": row["code"], "name": row["name"], "budget": row["budget"], "spent": row["spent"],
                "remaining": remaining, "available": amount <= remaining,
                "remaining_after": round(remaining - amount, 2)}

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def get_purchase_order(po_number: str) -> dict:
        """A purchase order: supplier, cost centre and total."""
        with open_db(db_path) as db:
            row = db.execute("SELECT * FROM purchase_orders WHERE number = ?", (po_number,)).fetchone()
        if row is None:
            raise ToolError(f"no purchase order '{po_number}'")
        return dict(row)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True))
    def post_payment(invoice_number: str, po_number: str, amount: float, ctx: Context) -> dict:
        """Book a payment against a purchase order's cost centre. A repeated idempotency key returns the
        first payment instead of booking another."""
        key = (ctx.request_context.meta or {}).get(IDEMPOTENCY_KEY)
        if amount <= 0:
            raise ToolError("the amount must be positive")
        with open_db(db_path) as db:
            db.execute("BEGIN IMMEDIATE")
            if key is not None:
                first = db.execute("SELECT * FROM payments WHERE idempotency_key = ?", (key,)).fetchone()
                if first is not None:
                    db.execute("COMMIT")
                    return {**dict(first), "duplicate_request": True}
            order = db.execute("SELECT * FROM purchase_orders WHERE number = ?", (po_number,)).fetchone()
            if order is None:
                db.execute("ROLLBACK")
                raise ToolError(f"no purchase order '{po_number}'")
            centre = cost_centre(db, order["cost_centre"])
            remaining = round(centre["budget"] - centre["spent"], 2)
            if amount > remaining:  # never a silent overspend: the payment is refused
                db.execute("ROLLBACK")
                raise ToolError(f"cost centre {centre['code']} has {remaining:,.2f} left, not enough for {amount:,.2f}; "
                                "the payment was not booked")
            cur = db.execute(
                "INSERT INTO payments (invoice_number, po_number, amount, cost_centre, idempotency_key, posted_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", (invoice_number, po_number, amount, order["cost_centre"], key, time.time()))
            db.execute("UPDATE cost_centres SET spent = spent + ? WHERE code = ?", (amount, order["cost_centre"]))
            db.execute("COMMIT")
            row = db.execute("SELECT * FROM payments WHERE id = ?", (cur.lastrowid,)).fetchone()
        time.sleep(pay_delay)  # booked, not yet answered: where a cut-off caller cannot know (--pay-delay)
        return {**dict(row), "duplicate_request": False}

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def list_payments(invoice_number: str | None = None) -> dict:
        """Payments booked so far, optionally for one invoice."""
        with open_db(db_path) as db:
            if invoice_number:
                rows = db.execute("SELECT * FROM payments WHERE invoice_number = ? ORDER BY id", (invoice_number,))
            else:
                rows = db.execute("SELECT * FROM payments ORDER BY id")
            return {"payments": [dict(r) for r in rows]}

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=os.environ.get("ERP_DB", "erp.sqlite"), help="the SQLite file")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT")
    parser.add_argument("--pay-delay", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long after booking a payment before answering (a slow ERP: shows what a "
                             "caller cut off in that moment does; the failover tests kill a worker there)")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)
    open_db(args.db).close()
    server = build_server(args.db, args.pay_delay)
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()


if __name__ == "__main__":
    main()
