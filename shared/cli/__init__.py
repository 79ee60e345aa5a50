"""The ``wsauth`` command line: the group, ``keys``, ``push``/``publish``/``revoke`` and ``dev``."""
