"""kombu's Redis transport, with acks that fail as a lost connection once their connection is gone.

A task still running when Redis restarts finishes after the worker has already closed the connection it came
in on. kombu's Redis channel then answers that task's ack (or reject) by building a new connection pool from a
transport that no longer has a connection (AttributeError: 'NoneType' object has no attribute 'hostname'), an
error Celery does not expect there, and the whole worker stops. Raised as the connection error it is, Celery
logs "Couldn't ack" and goes on: the message stays unacknowledged in Redis and is delivered again after the
visibility timeout, when its run is already done or taken over (see contexts/extraction/claim.py).
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connection_gone(self) -> bool:
        transport = self.connection  # the transport; None once the channel is closed
        return self.closed or transport is None or transport.client is None

    def basic_ack(self, delivery_tag, multiple=False):
        if self._connection_gone():
            raise RedisConnectionError("the broker connection this message came in on was lost; not acknowledged")
        return super().basic_ack(delivery_tag, multiple=multiple)

    def basic_reject(self, delivery_tag, requeue=False):
        if self._connection_gone():
            raise RedisConnectionError("the broker connection this message came in on was lost; not rejected")
        return super().basic_reject(delivery_tag, requeue=requeue)


class Transport(kombu_redis.Transport):
    Channel = Channel
