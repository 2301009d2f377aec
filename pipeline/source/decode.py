"""Record value -> site event dict, for the two framings the pipeline accepts.

A decoder is a plain callable `(bytes) -> dict` raising DecodeError with a fixed
reason slug (the dead-letter reason). Writer schemas are parsed once and cached; the
reader schema is the newest in `schemas/`, and only older writers pay for resolution.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from fastavro import schemaless_reader
from fastavro.schema import parse_schema

from ..errors import DecodeError, PipelineError
from .schemas import SINGLE_OBJECT_MAGIC, SchemaFamily, strip_logical_types

Decoder = Callable[[bytes], dict[str, Any]]


def _read(value: bytes, start: int, writer: Any, reader: Any) -> dict[str, Any]:
    stream = io.BytesIO(value)
    stream.seek(start)
    try:
        record: dict[str, Any] = schemaless_reader(stream, writer, reader)  # type: ignore[assignment]
    except Exception as exc:  # fastavro raises many types for corrupt bodies
        raise DecodeError("undecodable", f"{type(exc).__name__}: {exc}") from exc
    if stream.tell() != len(value):
        raise DecodeError("undecodable", f"{len(value) - stream.tell()} trailing bytes")
    return record


class SingleObjectDecoder:
    """Avro single-object encoding: C3 01, 8-byte CRC-64-AVRO fingerprint, body."""

    def __init__(self, family: SchemaFamily) -> None:
        newest = family.newest
        self._writers = {
            v.fingerprint: (v.parsed, None if v is newest else newest.parsed)
            for v in family.versions
        }

    def __call__(self, value: bytes) -> dict[str, Any]:
        if value[:2] != SINGLE_OBJECT_MAGIC or len(value) < 10:
            raise DecodeError("bad-framing", "not Avro single-object encoding (C3 01 header)")
        try:
            writer, reader = self._writers[value[2:10]]
        except KeyError:
            raise DecodeError(
                "unknown-schema", f"fingerprint {value[2:10].hex()} is not in schemas/"
            ) from None
        return _read(value, 10, writer, reader)


class RegistryDecoder:
    """Confluent wire format: magic 0, 4-byte big-endian schema id, body.

    Writer schemas come from the registry through confluent-kafka's client, once per
    id. A registry that cannot be reached is not the record's fault, so it raises a
    plain PipelineError (the process stops without committing and is restarted)
    rather than dead-lettering good data.
    """

    def __init__(self, family: SchemaFamily, registry_url: str) -> None:
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError as exc:
            raise PipelineError(
                "OFSYS_SCHEMA_REGISTRY_URL needs the registry extra: "
                "pip install 'ofsys-pipeline[registry]'"
            ) from exc
        self._client = SchemaRegistryClient({"url": registry_url})
        self._reader = family.newest.parsed
        self._raw_reader = family.newest.raw
        self._writers: dict[int, tuple[Any, Any]] = {}

    def _writer(self, schema_id: int) -> tuple[Any, Any]:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(
                    "unknown-schema", f"schema id {schema_id} not in registry"
                ) from exc
            raise PipelineError(f"schema registry failed: {exc}") from exc
        except Exception as exc:
            raise PipelineError(f"schema registry unreachable: {type(exc).__name__}") from exc
        raw = json.loads(schema.schema_str or "null")
        parsed = parse_schema(strip_logical_types(raw))
        pair = (parsed, None if raw == self._raw_reader else self._reader)
        self._writers[schema_id] = pair
        return pair

    def __call__(self, value: bytes) -> dict[str, Any]:
        if len(value) < 5 or value[0] != 0:
            raise DecodeError("bad-framing", "not Confluent wire format (magic byte 0)")
        schema_id = int.from_bytes(value[1:5], "big")
        writer, reader = self._writers.get(schema_id) or self._writer(schema_id)
        return _read(value, 5, writer, reader)


def make_decoder(family: SchemaFamily, registry_url: str | None) -> Decoder:
    return RegistryDecoder(family, registry_url) if registry_url else SingleObjectDecoder(family)
