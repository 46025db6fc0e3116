"""`python -m worker.healthcheck`: exit 0 when a soundcheck worker of this host is registered in Redis."""

from __future__ import annotations

import socket
import sys

from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from soundcheck.settings import get_settings


def main() -> int:
    settings = get_settings()
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=3)
    queue = Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    host = socket.gethostname()
    return 0 if any(w.hostname == host for w in Worker.all(queue=queue)) else 1


if __name__ == "__main__":
    sys.exit(main())
