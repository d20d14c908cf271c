"""``_celery`` methods: the result store, the Celery app and its brokers, the worker-side run,
enqueueing, waiting, and the ``/status/<id>`` views. The only layer that reaches Celery,
kombu or redis.
"""
