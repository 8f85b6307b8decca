"""The portal: ``studiox serve``, a web face over the same library the CLI uses.

Nothing here decides, runs or exports on its own: a decision goes through ``api.decide`` (the
same approval rules as at the terminal: approvers, four-eyes, quorum), a run is started with the
same engine and its drive is a ``studiox resume`` process of its own (so a shutdown interrupts
it cleanly, as Ctrl-C does, and it stays resumable), the rail and the timeline are read from the
journal, the export is ``export.py``'s.

- ``sessions``: signed session cookies, CSRF tokens, the login rate limit.
- ``drives``: the drive processes the portal started, stopped cleanly on shutdown.
- ``pages``: what the pages show, as data (inbox filters, the timeline, input forms).
- ``app``: the Starlette application: routes, roles, templates, request logs.
"""
