"""One client connection, in six modules (each module states its promises):

- session.py: the connection's lifecycle, command dispatch, liveness, expiry;
- commands.py: the eleven command handlers;
- subscriptions.py: its channels, the subscribe and recovery state machine,
  held-back publications, join and leave;
- outbox.py: its outgoing queue, flushes and the one outgoing budget;
- port.py: what a session needs of the node (`NodePort`), and what the node
  and the hub need of a session;
- hook_calls.py: what the command handlers hand the application's hooks.
"""

from .port import ChannelSubscriber, ClientSession, NodePort
from .session import Session, State

__all__ = ["ChannelSubscriber", "ClientSession", "NodePort", "Session", "State"]
