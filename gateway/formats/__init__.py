"""Embedded formats: JSON values <-> Kafka bytes, shared by the produce and consume paths.

Every format module exposes the same two pure functions, so a caller picks a module by the
format's name and never special-cases one:

* ``serialize(value) -> bytes | None``: a key or value from a request; JSON ``null`` is
  ``None`` (no key, or a tombstone). Client mistakes raise a 400 ``GatewayError``.
* ``deserialize(data) -> value``: stored bytes for a consumer; ``None`` reads as ``null``.
  Bytes the format cannot read raise 408 / 40801, as Confluent's deserializers do.
"""
