"""Fixtures of the observability tests: scraping ``/metrics``, polling, capturing JSON logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.polling import wait_until
from tests.ws.conftest import Tokens, gateway, tokens
from wsauth.shared.logs import JsonFormatter

__all__ = ["Tokens", "gateway", "tokens", "wait_until"]

Labels = tuple[tuple[str, str], ...]


def scrape(base_url: str) -> dict[tuple[str, Labels], float]:
    """Every sample of ``{base_url}/metrics``, keyed by (name, sorted labels)."""
    answer = requests.get(f"{base_url}/metrics", timeout=5)
    assert answer.status_code == 200, answer.text
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled child not created yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@dataclass
class JsonLog:
    """wsauth's log records, formatted by :class:`wsauth.shared.logs.JsonFormatter`."""

    stream: io.StringIO

    def documents(self) -> list[dict[str, Any]]:
        """Each line parsed; any line that is not one JSON object fails the test."""
        parsed = []
        for line in self.stream.getvalue().splitlines():
            document = json.loads(line)
            assert isinstance(document, dict), line
            parsed.append(document)
        return parsed

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def json_log() -> Iterator[JsonLog]:
    """The records of the ``wsauth`` loggers, as ``WSAUTH_LOG_FORMAT=json`` writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("wsauth")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield JsonLog(stream)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
