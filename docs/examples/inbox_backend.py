"""A backend that answers what clients `send`: read the inbox stream, push a reply.

    WSAUTH_REDIS_URL=redis://127.0.0.1:6379/0 python inbox_backend.py [--once]

Reads `{prefix}inbox` in the consumer group "echo" (each message goes to one
consumer of the group; several copies of this program share the work), pushes
`{"echo": <data>}` to the sender's live connections, then acknowledges the
message. A message whose consumer died unacknowledged is taken over after 60 s,
so a message may be handled twice: delivery is at-least-once. `--once` handles
one batch (waiting up to 5 s for it) and exits.
"""

import os
import socket
import sys

from wsauth.shared.state.events import publish_push
from wsauth.shared.state.inbox import Inbox
from wsauth.shared.state.replay import sync_client

PREFIX = os.environ.get("WSAUTH_REDIS_PREFIX", "wsauth:")


def main() -> None:
    redis = sync_client(os.environ.get("WSAUTH_REDIS_URL", "redis://127.0.0.1:6379/0"), timeout=10)
    inbox = Inbox(redis, PREFIX, group="echo", consumer=socket.gethostname())
    inbox.ensure_group(start="0")  # a new group starts at the oldest kept message
    while True:
        messages = inbox.claim_stale(min_idle=60) + inbox.read(count=100, block=5.0)
        for message in messages:
            # message.sub and message.sid come from the sender's verified token.
            publish_push(redis, PREFIX, message.sub, {"echo": message.data})
            inbox.ack(message.id)
        if "--once" in sys.argv:
            return


if __name__ == "__main__":
    main()
