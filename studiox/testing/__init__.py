"""``studiox test``: missions tested like code.

A test file (``invoice.test.yaml`` beside ``invoice.yaml``) holds cases. Each case runs the
mission in a state folder of its own, through the real engine, with scripted model answers
(the replay format), stub results for tools (whose descriptions still come from the real
servers, so what needs a decision is decided exactly as in production), scripted decisions, and
expectations about what comes out. ``crash:`` runs a case again once per journal event, killing
the run for real after that event and resuming it.

- ``cases``: reading a test file and checking it against its mission (located problems).
- ``doubles``: the tools door of a case: stub results, every call written down.
- ``running``: driving a case (and its crash variants) in processes of their own.
- ``expect``: what a finished case is checked against.
"""
