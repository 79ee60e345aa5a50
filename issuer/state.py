"""What one issuer app holds: settings, the minting :class:`~wsauth.shared.issuing.Issuer`,
stores. Kept in ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from wsauth.issuer.clients import ClientStore
from wsauth.issuer.host import HostState
from wsauth.issuer.login import RevokedSessions
from wsauth.issuer.published import PublishedJwks
from wsauth.issuer.users import UserStore
from wsauth.shared.core.config import Settings
from wsauth.shared.issuing import Issuer
from wsauth.shared.store.watched import WatchedFile

EXTENSION = "wsauth.issuer"


@dataclass(frozen=True)
class IssuerState:
    settings: Settings
    # The public minting API (wsauth.Issuer): the built-in endpoints mint through it too.
    signer: Issuer
    users: UserStore
    clients: ClientStore
    revoked: RevokedSessions
    jwks: WatchedFile[PublishedJwks | None]

    @classmethod
    def build(cls, settings: Settings, host: HostState) -> IssuerState:
        """The built-in app's state, sharing the Flask extension's issuer (one Redis pool)."""
        return cls(
            settings=settings,
            signer=host.issuer,
            users=UserStore.in_dir(settings.keys_dir),
            clients=ClientStore.in_dir(settings.keys_dir),
            revoked=host.revoked,
            jwks=host.jwks,
        )

    def close(self) -> None:
        """Release the Redis connections (servers call it when they stop)."""
        self.signer.close()


def get_state(app: Flask | None = None) -> IssuerState:
    """The state of ``app`` (default: the app handling this request)."""
    state: IssuerState = (app or current_app).extensions[EXTENSION]
    return state
