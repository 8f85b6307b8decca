"""The long-running side of studiox, in the ``studiox serve`` process (or alone: ``--no-web``).

Each tick (about once a second): inbox folders are looked at and schedules checked; every
firing is written to the trigger ledger (``ledger``) before its run starts; decisions whose
deadline has passed get their run resumed (the engine then applies ``on_timeout``); runs cut
off by a crash of the service are resumed when it starts again (unless they wait for a person);
notifications are delivered. Runs are driven by ``studiox resume`` processes (``portal.drives``).

- ``ledger``: the trigger ledger.
- ``triggers``: what each kind of trigger watches and when it fires.
- ``loop``: the ``Service`` that ticks.
"""
