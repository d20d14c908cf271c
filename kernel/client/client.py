"""The client: call KernKoa methods over HTTP, start tasks and follow them."""

from __future__ import annotations

import email.utils
import time
import typing as t

import httpx

from .codec import FORMATS
from .codec import accept_header
from .codec import decode
from .codec import encode
from .errors import CallError
from .task import Task

#: HTTP methods whose fields travel in the query string (they carry no body).
QUERY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})

#: The longest pause between two tries of a request answered 503, in seconds.
BACKOFF_LAST = 8.0


class Client:
    """Calls the methods of a KernKoa server, the way a browser or ``curl`` would.

    ::

        with Client("http://127.0.0.1:5000", token="...") as kk:
            kk.call("/shop/cart/Cart/add", item=3)           # {"added": 3}
            task = kk.start("/reports/build/Report/build_celery", year=2026)
            task.wait(timeout=60)                            # what build_celery returned

    :param base_url: the server's root URL (with the ``base`` prefix, if any).
    :param token: a bearer token sent with every request (``jwt_auth``).
    :param auth: ``(user, password)`` for Basic auth (``basic_auth``).
    :param format: ``"json"`` or ``"cbor"``: how bodies are sent and answers asked for.
    :param timeout: seconds one request may take (long polls get their wait on top).
    :param retries: how many times a request answered 503 is sent again, with a
        pause doubling from ``backoff`` seconds (or as ``Retry-After`` says).
    :param task_timeout: seconds :meth:`call` waits for a ``_celery`` method.
    :param keepalive: keep connections open between requests. Off by default: uWSGI's
        ``http-socket`` closes each connection without saying so, and a request
        sent on a connection the server closed fails with nothing to tell whether
        it arrived (sending a POST again could start a task twice). Turn it on for
        a server behind nginx, which announces what it closes.
    :param transport: an ``httpx`` transport (the test kit's goes to an app in-process).
    """

    def __init__(self, base_url: str, token: str | None = None, *,
                 auth: tuple[str, str] | None = None, format: str = "json",
                 timeout: float = 30.0, retries: int = 5, backoff: float = 0.5,
                 task_timeout: float = 60.0, keepalive: bool = False,
                 transport: httpx.BaseTransport | None = None) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {sorted(FORMATS)}, not {format!r}")
        self.format = format
        self.retries = retries
        self.backoff = backoff
        self.task_timeout = task_timeout
        self.timeout = timeout
        headers = {"Accept": accept_header(format)}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=base_url, headers=headers, auth=auth,
                                 timeout=timeout, transport=transport,
                                 limits=httpx.Limits(
                                     max_keepalive_connections=None if keepalive else 0))

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def __enter__(self) -> t.Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Requests -----------------------------------------------------------

    def request(self, method: str, path: str, *, fields: t.Mapping[str, t.Any] | None = None,
                form: t.Mapping[str, str | list[str]] | None = None,
                query: t.Mapping[str, t.Any] | None = None,
                headers: t.Mapping[str, str] | None = None,
                timeout: float | None = None) -> httpx.Response:
        """Send one request and return the answer whatever its status, after sending it
        again while it is a 503 (a broker or store that is down: nothing was started).

        ``fields`` go in the body (JSON or CBOR), or in the query string for GET,
        HEAD, DELETE and OPTIONS; ``form`` is sent as a urlencoded form.
        """
        method = method.upper()
        sent_headers = dict(headers or {})
        query = dict(query or {})
        content: bytes | None = None
        if fields is not None and method in QUERY_METHODS:
            query.update(fields)
        elif fields is not None:
            content, sent_headers["Content-Type"] = encode(dict(fields), self.format)
        data = dict(form) if form is not None else None

        def send() -> httpx.Response:
            return self.http.request(
                method, path, content=content, data=data, params=query or None,
                headers=sent_headers, timeout=timeout if timeout is not None else self.timeout)

        pause = self.backoff
        for _ in range(self.retries):
            response = send()
            if response.status_code != 503:
                return response
            time.sleep(_retry_after(response) or pause)
            pause = min(2 * pause, BACKOFF_LAST)
        return send()

    def get(self, path: str, /, **query: t.Any) -> httpx.Response:
        """``GET path?query``: the raw answer (``status_code``, ``json()``, ``headers``)."""
        return self.request("GET", path, query=query)

    def post(self, path: str, /, **fields: t.Any) -> httpx.Response:
        """``POST path`` with ``fields`` as the body: the raw answer."""
        return self.request("POST", path, fields=fields)

    def delete(self, path: str, /, **query: t.Any) -> httpx.Response:
        """``DELETE path?query``: the raw answer."""
        return self.request("DELETE", path, query=query)

    # --- Methods and tasks ------------------------------------------------------

    def call(self, path: str, /, *, method: str = "POST", **fields: t.Any) -> t.Any:
        """Call the method at ``path`` with ``fields`` and return what it returned.

        A ``_celery`` method is waited for (``Prefer: wait``, then long polls) at
        most :attr:`task_timeout` seconds.

        :raises CallError: on a 4xx or 5xx answer, with its envelope.
        :raises TaskFailed: when the task failed or was cancelled.
        :raises TaskTimeout: when it did not finish in time.
        """
        response = self.request(method, path, fields=fields,
                                headers={"Prefer": f"wait={int(min(self.task_timeout, 25))}"})
        return self.result_of(response)

    def result_of(self, response: httpx.Response) -> t.Any:
        """The value an answer carries: the decoded body, or the result of the task it
        started, waited for (see :meth:`call`).

        :raises CallError: when it is a 4xx or 5xx answer.
        """
        body = self._checked(response)
        task = self._task_in(response, body)
        return body if task is None else task.wait(self.task_timeout)

    def start(self, path: str, /, *, method: str = "POST", **fields: t.Any) -> Task:
        """Start the ``_celery`` method at ``path`` with ``fields``; return its task.

        :raises CallError: on a 4xx or 5xx answer (nothing was started).
        :raises ValueError: when the answer is no task (``path`` is no ``_celery`` method).
        """
        response = self.request(method, path, fields=fields)
        task = self.task_of(response)
        if task is None:
            raise ValueError(f"{method} {path} started no task (HTTP {response.status_code}): "
                             "is it a _celery method?")
        return task

    def task(self, task_id: str) -> Task:
        """The task of ``task_id`` (from a controller's ``exeTask``, say)."""
        return Task(self, task_id)

    def wait(self, task: Task | str, timeout: float = 60.0) -> t.Any:
        """Wait for a task (or task id) and return its result: see :meth:`Task.wait`."""
        return (task if isinstance(task, Task) else self.task(task)).wait(timeout)

    def task_of(self, response: httpx.Response) -> Task | None:
        """The task a trigger's answer names (202, or 200 after ``Prefer: wait``), else
        ``None``.

        :raises CallError: when it is a 4xx or 5xx answer.
        """
        return self._task_in(response, self._checked(response))

    def _task_in(self, response: httpx.Response, body: t.Any) -> Task | None:
        if response.status_code not in (200, 202) or not _is_trigger_answer(body):
            return None
        status = {k: v for k, v in body.items() if k not in ("id", "status_url")}
        return Task(self, body["id"], body["status_url"], status)

    def task_status(self, status_url: str, wait: float | None = None) -> dict[str, t.Any]:
        """``GET`` a task's status body, long-polling ``wait`` seconds when given."""
        query = {} if wait is None else {"wait": f"{wait:.1f}"}
        timeout = self.timeout + (wait or 0)
        body = self._checked(self.request("GET", status_url, query=query, timeout=timeout))
        if not isinstance(body, dict) or "status" not in body:
            raise ValueError(f"{status_url} answered no status body: {body!r}")
        return body

    def cancel_task(self, status_url: str) -> dict[str, t.Any]:
        """``DELETE`` a task's status: cancel it; return the status body."""
        return t.cast(dict[str, t.Any], self._checked(self.request("DELETE", status_url)))

    def _checked(self, response: httpx.Response) -> t.Any:
        """The decoded body of ``response``.

        :raises CallError: when it is a 4xx or 5xx answer (a malformed error body is
            kept as text).
        :raises ValueError: when another answer's body is malformed.
        """
        try:
            body = decode(response)
        except ValueError:
            if response.status_code < 400:
                raise
            body = response.text
        if response.status_code >= 400:
            raise CallError(response.request.method, str(response.request.url.path),
                            response.status_code, body)
        return body


def _is_trigger_answer(body: t.Any) -> bool:
    return (isinstance(body, dict) and isinstance(body.get("id"), str)
            and isinstance(body.get("status_url"), str) and "status" in body
            and body["status_url"].rstrip("/").endswith("/status/" + body["id"]))


def _retry_after(response: httpx.Response) -> float | None:
    """The pause a ``Retry-After`` header asks for (seconds or a date), at most
    :data:`BACKOFF_LAST`; ``None`` when there is none."""
    raw = response.headers.get("Retry-After", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return min(float(raw), BACKOFF_LAST)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(when.timestamp() - time.time(), BACKOFF_LAST))
