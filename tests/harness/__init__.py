"""Real servers for tests: a Kafka broker from the official jars, redis-server, free ports.

Each server object has explicit ``start()`` / ``stop()`` so a test can also own a private one
(to pause, kill or restart it) without disturbing the session-wide servers in conftest.py.
"""

from tests.harness.kafka import KafkaServer, ensure_jars
from tests.harness.ports import free_port, free_ports
from tests.harness.redis import RedisServer

__all__ = ["KafkaServer", "RedisServer", "ensure_jars", "free_port", "free_ports"]
