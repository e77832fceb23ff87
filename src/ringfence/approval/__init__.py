"""Approvals: decide, before a command runs, whether it runs, asks, or never runs.

- ``model``: the frozen values (``Rule``, ``Escalation``, ``Context``, ``Decision``).
- ``engine.decide``: the pure decision for one command (argv or shell string).
- ``shell``: the bash parser (tree-sitter's bash grammar), imported only for shell text.
- ``builtin``: the built-in lists (``builtin.rules``): known read-only commands, always-ask.
- ``rules``: loading ``[[rules]]`` from TOML and checking their examples.
- ``prompt``: asking a person on the terminal; the session's approvals.

Nothing here imports tree-sitter, json or hashlib at import time: the run path stays lean.
"""
