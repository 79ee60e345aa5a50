"""ws/registry.py: live connections by sub and by sid."""

from __future__ import annotations

from wsauth.ws.registry import ConnectionRegistry


def test_registry_finds_connections_by_sub_and_by_sid() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    registry.add("a1", sub="alice", sid="s1")
    registry.add("a2", sub="alice", sid="s2")
    registry.add("b1", sub="bob")
    assert registry.connections_of("alice") == {"a1", "a2"}
    assert registry.connections_of("bob") == {"b1"}
    assert registry.connections_of_session("s1") == {"a1"}
    assert registry.connections_of("carol") == frozenset()
    assert registry.owner_of("b1") == ("bob", None)
    assert len(registry) == 3
    assert registry.subjects() == {"alice", "bob"}


def test_registry_forgets_a_removed_connection_and_empty_indexes() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    registry.add("a1", sub="alice", sid="s1")
    assert registry.remove("a1") is True
    assert registry.remove("a1") is False
    assert "a1" not in registry
    assert registry.connections_of("alice") == frozenset()
    assert registry.connections_of_session("s1") == frozenset()
    assert registry.subjects() == frozenset()
    assert len(registry) == 0


def test_registry_moves_a_connection_added_twice() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    registry.add("c", sub="alice", sid="s1")
    registry.add("c", sub="bob")
    assert registry.connections_of("alice") == frozenset()
    assert registry.connections_of_session("s1") == frozenset()
    assert registry.connections_of("bob") == {"c"}


def test_registry_can_be_changed_while_iterating() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    for name in ("a", "b", "c"):
        registry.add(name, sub=name)
    for connection in registry:
        registry.remove(connection)
    assert len(registry) == 0


def test_registry_snapshots_do_not_change_under_the_caller() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    registry.add("a1", sub="alice")
    snapshot = registry.connections_of("alice")
    registry.add("a2", sub="alice")
    assert snapshot == {"a1"}


class Recorder:
    """A Holdings listener that writes down what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, str]] = []

    def held(self, kind: str, name: str) -> None:
        self.heard.append(("held", kind, name))

    def released(self, kind: str, name: str) -> None:
        self.heard.append(("released", kind, name))


def test_registry_joins_and_leaves_channels_idempotently() -> None:
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    registry.add("a1", sub="alice")
    registry.add("b1", sub="bob")
    assert registry.join("a1", "room") is True
    assert registry.join("a1", "room") is False
    assert registry.join("b1", "room") is True
    assert registry.members("room") == {"a1", "b1"}
    assert registry.channels_of("a1") == {"room"}
    assert registry.leave("a1", "room") is True
    assert registry.leave("a1", "room") is False
    assert registry.members("room") == {"b1"}
    assert registry.channels() == {"room"}


def test_registry_removal_leaves_every_channel_and_an_unregistered_connection_joins_nothing() -> (
    None
):
    registry: ConnectionRegistry[str] = ConnectionRegistry()
    registry.add("a1", sub="alice")
    registry.join("a1", "x")
    registry.join("a1", "y")
    registry.remove("a1")
    assert registry.channels() == frozenset()
    assert registry.channels_of("a1") == frozenset()
    assert registry.join("a1", "x") is False
    assert registry.channels() == frozenset()


def test_registry_tells_its_listener_about_the_first_and_the_last_only() -> None:
    recorder = Recorder()
    registry: ConnectionRegistry[str] = ConnectionRegistry(recorder)
    registry.add("a1", sub="alice")
    registry.add("a2", sub="alice")
    registry.join("a1", "room")
    registry.join("a2", "room")
    registry.leave("a1", "room")
    registry.remove("a1")
    assert recorder.heard == [("held", "user", "alice"), ("held", "channel", "room")]
    registry.remove("a2")
    assert recorder.heard[2:] == [("released", "channel", "room"), ("released", "user", "alice")]
