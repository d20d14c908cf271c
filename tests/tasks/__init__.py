"""Tests of kernel/tasks/: in one process (``test_<module>.py``), and on real workers,
brokers and servers (``test_redis.py``, ``test_rabbitmq.py``, ``test_embedded.py``,
``test_reliability.py``, ``test_access_on_redis.py``)."""
