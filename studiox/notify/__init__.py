"""Notifications: who is told when a decision is waiting or about to expire, or a run failed or finished.

``notify:`` entries (on a mission, or in the state folder's ``settings.yaml``) name the events and
a webhook, a command or an email address. Notifications are derived from the journal by a
:class:`Notifier` that a long-running process ticks (``studiox serve``), never sent by the run, so
delivery never blocks or fails a run. Every delivery is retried with backoff and recorded in the
state folder's ``notifications.db`` (:func:`deliveries` lists them).

- ``targets``: which entries hear about a mission's runs (``read_settings`` reads the settings file)
- ``messages``: what each event says (``text`` for people, details for programs)
- ``senders``: webhook (HTTP POST JSON), command (JSON on stdin), email (SMTP)
- ``ledger``: ``notifications.db``: deliveries, where the last look ended
- ``notifier``: ``Notifier.tick``: new events → deliveries → attempts
"""

from __future__ import annotations

from .ledger import RETRY_IN, deliveries
from .notifier import Delivery, Notifier
from .targets import EVENTS, read_settings, target_id, targets

__all__ = ["EVENTS", "RETRY_IN", "Delivery", "Notifier", "deliveries", "read_settings", "target_id", "targets"]
