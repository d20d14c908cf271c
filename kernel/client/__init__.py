"""A Python client of any KernKoa server: ``Client(base_url).call("/shop/cart/Cart/add", item=3)``.

It imports nothing of the server side: it speaks HTTP (on ``httpx``), JSON or
CBOR, and the documented statuses of ``/status/<id>``.
"""

from __future__ import annotations

from .client import Client as Client
from .errors import CallError as CallError
from .errors import TaskFailed as TaskFailed
from .errors import TaskTimeout as TaskTimeout
from .task import Task as Task
