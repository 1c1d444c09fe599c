"""Envoy's /stats/prometheus, parsed: the text exposition format (0.0.4) as Envoy writes it.

Strict on purpose: a line that is neither a comment nor a well-formed sample fails the parse, so
a test reading the scrape also checks that a Prometheus server could read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

_SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Labels = frozenset[tuple[str, str]]


class ExpositionError(ValueError):
    pass


def _labels(text: str | None, line: str) -> Labels:
    if not text:
        return frozenset()
    found = list(_LABEL.finditer(text))
    if ",".join(m.group(0) for m in found) != text:
        raise ExpositionError(f"malformed labels: {line!r}")
    unescape = re.compile(r'\\[\\"n]')
    return frozenset((m["name"], unescape.sub(lambda e: _ESCAPES[e.group(0)], m["value"])) for m in found)


@dataclass(frozen=True)
class Exposition:
    """Every sample of one scrape, and the `# TYPE` of every family."""

    types: dict[str, str]
    samples: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        types: dict[str, str] = {}
        samples: dict[tuple[str, Labels], float] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, family, kind = line.split(" ")
                types[family] = kind
                continue
            if not line or line.startswith("#"):
                continue
            match = _SAMPLE.fullmatch(line)
            if match is None:
                raise ExpositionError(f"not a sample: {line!r}")
            key = (match["name"], _labels(match["labels"], line))
            if key in samples:
                raise ExpositionError(f"duplicate series: {line!r}")
            samples[key] = float(match["value"])
        return cls(types, samples)

    def value(self, name: str, **labels: str) -> float:
        """The sample of `name` with exactly these labels; KeyError when there is none."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            raise KeyError(f"no series {name}{labels or '{}'} in the scrape")
        return self.samples[key]

    def label_values(self, name: str, label: str) -> dict[str, float]:
        """label value -> sample, for the series of `name` that carry `label`."""
        return {value: sample for (n, labels), sample in self.samples.items() if n == name
                for key, value in labels if key == label}

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def scrape(admin_url: str) -> Exposition:
    response = httpx.get(f"{admin_url}/stats/prometheus", timeout=5)
    response.raise_for_status()
    return Exposition.parse(response.text)
