"""The kit's client: :class:`kernel.client.Client` sending its requests to an app in
this process, with tasks run eagerly here or sent to a worker."""

from __future__ import annotations

import typing as t

import httpx
from flask import Flask

from ..client import Client
from ..tasks.celeryapp import KernKoaCelery
from ..tasks.celeryapp import get_celery
from .auth import basic_user
from .auth import token_for

#: The base URL of an app in this process (the host its external URLs name).
IN_PROCESS_URL = "http://localhost"


class AppTransport(httpx.WSGITransport):
    """Requests go to ``app`` through WSGI; with ``eager``, task messages are held in
    this process and run between requests.

    A held task runs before the next request, unless that request is a
    ``DELETE`` (a cancellation of a task not started yet, as a busy worker would
    see it), and after each answer that is not a trigger's ``202`` (so a task a
    controller starts with ``exeTask`` has run when the call returns). A trigger
    does not wait inside its request (``Prefer: wait`` is dropped): its task runs
    only after the answer.
    """

    def __init__(self, app: Flask, eager: bool) -> None:
        super().__init__(app=app)
        self.celery: KernKoaCelery | None = None
        if eager:
            self.celery = get_celery(app)
            self.celery.hold_tasks()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to the app, running held tasks around it (see the class)."""
        if self.celery is None:
            return super().handle_request(request)
        if request.method != "DELETE":
            self.celery.run_held()
        request.headers.pop("Prefer", None)
        response = super().handle_request(request)
        if response.status_code != 202:
            self.celery.run_held()
        return response


class KitClient(Client):
    """The ``kernkoa_client`` fixture: an in-process :class:`~kernel.client.Client` of
    ``app``, with the auth helpers of :mod:`kernel.testing.auth`."""

    def __init__(self, app: Flask, transport: AppTransport, **options: t.Any) -> None:
        super().__init__(IN_PROCESS_URL, transport=transport, **options)
        #: The app the requests go to.
        self.app = app
        self.transport = transport

    def with_token(self, *scopes: str, subject: str = "tester") -> KitClient:
        """A client of the same app sending a valid bearer token with ``scopes``."""
        return KitClient(self.app, self.transport, token=token_for(self.app, *scopes,
                                                                   subject=subject),
                         format=self.format)

    def with_user(self, *scopes: str, name: str = "tester") -> KitClient:
        """A client of the same app logged in by Basic auth as a user with ``scopes``."""
        return KitClient(self.app, self.transport, auth=basic_user(self.app, *scopes, name=name),
                         format=self.format)

    def with_format(self, format: str) -> KitClient:
        """A client of the same app speaking ``"json"`` or ``"cbor"``."""
        return KitClient(self.app, self.transport, format=format)
