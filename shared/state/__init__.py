"""Redis I/O: token records, sessions and revocations, events, connections, the embedded server."""
