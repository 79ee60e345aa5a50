"""The ``wsauth`` command line: the group, ``keys``, ``push``/``revoke`` and ``dev``."""
