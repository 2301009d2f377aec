"""Record value -> site event (event.py), for the two framings the pipeline accepts.

A decoder is a plain callable `(bytes) -> SiteEvent` raising DecodeError with a fixed
reason slug (the dead-letter reason); `record(value)` is fastavro's dict of the same
value (the reference reader: the bench's ceiling, the tests, the trigger topic). Writer
schemas are parsed once and cached; the reader schema is the newest in `schemas/`, and
only older writers pay for resolution.

Bodies are read by the fastest reader that knows their writer schema: the SiteEvent
reader written for our layouts (site_reader.py) for the versions in `schemas/`, else
cavro (a Cython Avro codec) when it is installed, else fastavro; all give the same
events (cavro's and fastavro's dicts through `SiteEvent.of`). A body the fast reader
cannot read whole is read again by fastavro, whose answer (the record or the error) is
the one used: the hot path pays nothing for the precise message.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from fastavro import schemaless_reader
from fastavro.schema import parse_schema

from ..errors import DecodeError, PipelineError
from .event import SiteEvent
from .schemas import (
    SINGLE_OBJECT_MAGIC,
    SchemaFamily,
    single_object_fingerprint,
    strip_logical_types,
)
from .site_reader import BodyReader, site_event_reader

try:
    import cavro
except ImportError:  # no wheel for this platform: fastavro reads everything
    cavro = None

Decoder = Callable[[bytes], SiteEvent]
# Appended to a body for cavro, and read back right after the record: found there, the
# body ended where the record did (no bytes left over) without an exception per record.
# Its bytes repeat no shorter pattern, so bytes left over read back as something else
# (unless they begin with these very 8 bytes).
_END = b"\xa7\x1f\xc3\x5e\x90\x02\xeb\x6d"


class _Cavro(BodyReader):
    """cavro's reader of bodies written with one writer schema (resolved to the reader's
    when given): for writer schemas the SiteEvent reader does not know."""

    __slots__ = ("_memory_reader", "_read", "_read_end")

    def __init__(self, writer_raw: Any, reader_raw: Any | None) -> None:
        options = cavro.DEFAULT_OPTIONS.replace(record_decodes_to_dict=True)
        schema: Any = cavro.Schema(strip_logical_types(writer_raw), options=options)
        if reader_raw is not None:
            reader = cavro.Schema(strip_logical_types(reader_raw), options=options)
            schema = reader.reader_for_writer(schema)
        self._read: Any = schema.binary_read
        end: Any = cavro.Schema({"type": "fixed", "name": "end", "size": len(_END)})
        self._read_end: Any = end.binary_read
        self._memory_reader: Any = cavro.MemoryReader

    def read(self, value: bytes, start: int) -> SiteEvent | None:
        """The event, or None when cavro cannot read the body whole (fastavro then
        reads it again and says why)."""
        body = self._memory_reader(value[start:] + _END)
        try:
            record: dict[str, Any] = self._read(body)
            if self._read_end(body) == _END:  # the body ended right there: read whole
                return SiteEvent.of(record)
        except Exception:  # corrupt or truncated: fastavro says which
            pass
        return None  # or bytes left over


def _fast_reader(writer_raw: Any, reader_raw: Any) -> BodyReader | None:
    """The fastest reader of a writer schema's bodies resolved to the reader schema: the
    SiteEvent reader for a layout it knows, else cavro's; None without either."""
    site = site_event_reader(
        single_object_fingerprint(writer_raw), single_object_fingerprint(reader_raw)
    )
    if site is not None:
        return site
    return (
        None
        if cavro is None
        else _Cavro(writer_raw, None if writer_raw == reader_raw else reader_raw)
    )


def _read(value: bytes, start: int, writer: Any, reader: Any) -> dict[str, Any]:
    stream = io.BytesIO(value)
    stream.seek(start)
    try:
        record: dict[str, Any] = schemaless_reader(stream, writer, reader)  # type: ignore[assignment]
    except Exception as exc:  # fastavro raises many types for corrupt bodies
        # fastavro's EOFError names the stream by its address: the same body would give
        # another reason at each read (dead letters, tests comparing readers)
        detail = str(exc).replace(repr(stream), "the body")
        raise DecodeError("undecodable", f"{type(exc).__name__}: {detail}") from exc
    if stream.tell() != len(value):
        raise DecodeError("undecodable", f"{len(value) - stream.tell()} trailing bytes")
    return record


class SingleObjectDecoder:
    """Avro single-object encoding: C3 01, 8-byte CRC-64-AVRO fingerprint, body."""

    def __init__(self, family: SchemaFamily) -> None:
        newest = family.newest
        self._writers: dict[bytes, tuple[Any, Any, BodyReader | None]] = {
            v.fingerprint: (
                v.parsed,
                None if v is newest else newest.parsed,
                _fast_reader(v.raw, newest.raw),
            )
            for v in family.versions
        }

    def __call__(self, value: bytes) -> SiteEvent:
        writer, reader, fast = self._writer(value)
        if fast is not None and (event := fast.read(value, 10)) is not None:
            return event
        return SiteEvent.of(_read(value, 10, writer, reader))

    def record(self, value: bytes) -> dict[str, Any]:
        """fastavro's record of the value, read by fastavro alone (any family)."""
        writer, reader, _ = self._writer(value)
        return _read(value, 10, writer, reader)

    def _writer(self, value: bytes) -> tuple[Any, Any, BodyReader | None]:
        if value[:2] != SINGLE_OBJECT_MAGIC or len(value) < 10:
            raise DecodeError("bad-framing", "not Avro single-object encoding (C3 01 header)")
        try:
            return self._writers[value[2:10]]
        except KeyError:
            raise DecodeError(
                "unknown-schema", f"fingerprint {value[2:10].hex()} is not in schemas/"
            ) from None


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
        self._writers: dict[int, tuple[Any, Any, BodyReader | None]] = {}

    def _writer(self, schema_id: int) -> tuple[Any, Any, BodyReader | None]:
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
        newest = raw == self._raw_reader
        entry = (
            parsed,
            None if newest else self._reader,
            _fast_reader(raw, self._raw_reader),
        )
        self._writers[schema_id] = entry
        return entry

    def __call__(self, value: bytes) -> SiteEvent:
        if len(value) < 5 or value[0] != 0:
            raise DecodeError("bad-framing", "not Confluent wire format (magic byte 0)")
        schema_id = int.from_bytes(value[1:5], "big")
        writer, reader, fast = self._writers.get(schema_id) or self._writer(schema_id)
        if fast is not None and (event := fast.read(value, 5)) is not None:
            return event
        return SiteEvent.of(_read(value, 5, writer, reader))


def make_decoder(family: SchemaFamily, registry_url: str | None) -> Decoder:
    return RegistryDecoder(family, registry_url) if registry_url else SingleObjectDecoder(family)
