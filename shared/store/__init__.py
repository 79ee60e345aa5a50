"""The key store on disk: atomic writes, key states, the published JWKS."""
