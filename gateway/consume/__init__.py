"""v2 consumer instances over HTTP: routes, request parsing, and records to response elements.

:mod:`.routes` validates each request and hands it to the instance router (``sessions``),
forwarding it through :mod:`gateway.forwarding` when another replica owns the instance;
:mod:`.requests` parses bodies the way Confluent does; :mod:`.decoding` turns Kafka records
into the response's elements through :mod:`gateway.formats`. Nothing here imports the produce
side.
"""
