"""The server HTTP API: Centrifugo-compatible methods at `POST /api/<method>`.

`requests` parses and validates each method's body (pure), `executor` runs the
methods against a node, `cluster_commands` carries the methods aimed at users
to every node and surveys their channels, `keys` decides which API keys are
accepted, `pattern` matches channel names for the `channels` method, and `cli`
is `run.py publish`. The Tornado handler lives in `wsfan.web.api`. Nothing is
imported here; the node imports nothing of this package (server/compose.py
registers the cluster commands with it).
"""
