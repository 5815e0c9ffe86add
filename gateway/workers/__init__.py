"""``workers=N``: N processes per replica, one public listener, one node each.

A Python process uses one core. Rather than asking operators to run one replica per core
(each with its own Kafka and Redis connections and its own place in the load balancer), a
replica's parent process (:mod:`.supervisor`) binds the listener once and runs N workers on
it. Each worker is a full node of the session directory, exactly like a replica: it owns the
consumer instances created on it, and reaches a sibling's over a Unix domain socket with the
same signed hop it uses for other replicas (:mod:`.identity` names the siblings and their
sockets). The parent restarts a worker that dies, forwards SIGTERM and SIGHUP, and a scrape of
``/metrics`` on any worker answers for all of them (:mod:`.metrics_merge`).
"""
