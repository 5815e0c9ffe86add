"""Embedded formats: JSON values <-> Kafka bytes, shared by the produce and consume paths.

Every format module exposes the same two pure functions, so a caller picks a module by the
format's name and never special-cases one:

* ``serialize(value) -> bytes | None``: a key or value from a request; JSON ``null`` is
  ``None`` (no key, or a tombstone). Client mistakes raise a 400 ``GatewayError``.
* ``deserialize(data) -> value``: stored bytes for a consumer; ``None`` reads as ``null``.
  Bytes the format cannot read raise 408 / 40801, as Confluent's deserializers do.

The schema formats (``avro``, ``jsonschema``, ``protobuf``) cannot be plain functions: a value's
bytes depend on its schema. Each compiles schema text into a *codec* with the same two
directions (:mod:`.codec`); :mod:`.framing` adds Confluent's magic byte and schema id around
the payload, and :mod:`gateway.registry.schemas` finds and caches the codecs by schema id.
"""
