"""Record streams: long-lived responses that push records as they arrive.

Two kinds share this package's pieces: an instance's records as Server-Sent Events or NDJSON
(``GET /consumers/.../records`` with a streaming Accept, :mod:`gateway.consume.stream`) and the
group-less topic streams for browsers (``GET /topics/{t}/events``, :mod:`gateway.streams`).
Both frame events with :mod:`.framing`, hold a slot from :mod:`.slots` for as long as they are
open, and write through :class:`.writer.EventStream`, which bounds a slow reader and ends the
stream when the replica drains.
"""
