"""Windows support.

- ``paths``: pure Windows path rules (``ntpath``): canonical forms and keys, refusal of paths the
  sandbox cannot guard (device namespace, network shares, streams as roots …).
- ``plan``: policy + command + Windows host facts → a Windows plan (pure data: sandbox users,
  capability SIDs, ACEs per path, firewall rules, job limits, token flags, desktop, environment),
  printed by ``ringfence explain --platform windows`` on any OS.
- ``manifest``: what ringfence has added to a Windows host (ACEs, users, rules), so later runs do
  no repeated ACL work and ``ringfence windows cleanup`` removes exactly that.
- ``_win32`` / ``backend``: the thin ctypes layer and the commands (Windows only; not yet run on a
  real Windows host, see the README).
"""
