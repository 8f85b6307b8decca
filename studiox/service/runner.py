"""Ticking a ``Service`` in the background, until told to stop (the portal's lifespan, or ``serve --no-web``)."""

from __future__ import annotations

import json
import logging
import threading

from .loop import Service

log = logging.getLogger("studiox.service")


class Ticking:
    def __init__(self, service: Service, interval: float):
        self.service = service
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="studiox-service", daemon=True)
        self.notices = threading.Thread(target=self._notify, name="studiox-notify", daemon=True) \
            if service.notifier is not None else None

    @classmethod
    def start(cls, service: Service, interval: float = 1.0) -> Ticking:
        ticking = cls(service, interval)
        ticking.thread.start()
        if ticking.notices is not None:
            ticking.notices.start()
        return ticking

    def _run(self) -> None:
        try:
            self.service.recover()
        except Exception as e:  # noqa: BLE001 - logged; the ticks go on
            log.warning(json.dumps({"service": "recovery failed", "error": f"{type(e).__name__}: {e}"}))
        while not self.stopped.wait(self.interval):
            self.service.tick()

    def _notify(self) -> None:
        self.service.notifier.run(self.stopped.is_set, every=self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(30)
        if self.notices is not None:
            self.notices.join(60)
        self.service.close()
