"""Code both services use: the pure core, the key store, Redis I/O, the command line."""

if __name__ != "wsauth.shared":  # one module, one name: never importable as top-level `shared`
    raise ImportError(
        f"import wsauth.shared, not {__name__}: wsauth installs one package, `wsauth`"
    )
