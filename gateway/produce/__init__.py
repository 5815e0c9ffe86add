"""v2 produce: ``POST /topics/{topic}[/partitions/{partition}]``, request to Kafka records.

One role per module, in the order a request meets them: :mod:`.routes` (negotiation, the
response), :mod:`.request` (the body, validated whole before anything is sent),
:mod:`.encoding` (keys and values to bytes through :mod:`gateway.formats`), :mod:`.batching`
(records into per-partition record batches) and :mod:`.sender` (the shared producer, bounded
waits, per-record outcomes). Nothing here imports the consume side.
"""
