"""The Avro schemas of `schemas/`: loaded and parsed once, found by fingerprint.

Files are named `<name>.v<N>.avsc`; the highest N of a name is the reader schema, and
every older version stays decodable (its records resolve to the newest). Logical types
are stripped before parsing so `timestamp` decodes as plain epoch milliseconds: the
pipeline never needs a datetime, and building one per event is measurable. Stripping
does not change fingerprints (the Parsing Canonical Form drops logical types anyway).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

from fastavro import schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from ..errors import ConfigError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_FILE_RE = re.compile(r"(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc")
_PACKAGED = Path(__file__).parent.parent / "_schemas"  # inside a built wheel
_SOURCE = Path(__file__).parent.parent.parent / "schemas"  # in a checkout


def schemas_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _SOURCE


def strip_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(item) for item in schema]
    return schema


def single_object_fingerprint(schema: Any) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of the Parsing Canonical Form."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaVersion:
    name: str
    version: int
    raw: dict[str, Any]
    parsed: dict[str, Any]
    fingerprint: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaFamily:
    """All versions of one schema, oldest first; `newest` is the reader schema."""

    versions: tuple[SchemaVersion, ...]

    @property
    def newest(self) -> SchemaVersion:
        return self.versions[-1]

    def version(self, number: int) -> SchemaVersion:
        for candidate in self.versions:
            if candidate.version == number:
                return candidate
        raise ConfigError(f"no version {number} of schema {self.newest.name}")

    def encode_single_object(self, record: dict[str, Any], version: int | None = None) -> bytes:
        schema = self.newest if version is None else self.version(version)
        out = io.BytesIO()
        out.write(SINGLE_OBJECT_MAGIC)
        out.write(schema.fingerprint)
        schemaless_writer(out, schema.parsed, record)
        return out.getvalue()


def load_family(name: str, directory: Path | None = None) -> SchemaFamily:
    directory = directory or schemas_dir()
    versions = []
    for path in directory.glob(f"{name}.v*.avsc"):
        match = _FILE_RE.fullmatch(path.name)
        if not match:
            continue
        try:
            raw = json.loads(path.read_text())
            parsed: dict[str, Any] = parse_schema(strip_logical_types(raw))  # type: ignore[assignment]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"schema {path} is not valid Avro: {exc}") from exc
        versions.append(
            SchemaVersion(name, int(match["version"]), raw, parsed, single_object_fingerprint(raw))
        )
    if not versions:
        raise ConfigError(f"no {name}.v<N>.avsc schema in {directory}")
    versions.sort(key=lambda v: v.version)
    return SchemaFamily(tuple(versions))
