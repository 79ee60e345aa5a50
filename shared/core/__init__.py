"""The pure core: settings, token format, keyset, errors, client addresses. No I/O."""
