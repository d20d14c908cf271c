"""Every parameter shape and constraint the binder knows, for the contract test.

Each method echoes what it was given, so a fuzzer driven by the OpenAPI
document sees the kernel accept exactly what the document promises, refuse
the rest, and answer only with the statuses and types it lists.
"""

import re
import typing as t
from typing import Annotated
from typing import Literal

from annotated_types import Ge
from annotated_types import Gt
from annotated_types import Interval
from annotated_types import Le
from annotated_types import Len
from annotated_types import Lt
from annotated_types import MaxLen
from annotated_types import MinLen
from annotated_types import MultipleOf
from annotated_types import doc
from werkzeug.datastructures import FileStorage

from kernkoa import methods
from kernkoa import task_options


def _plain(params: t.Any) -> t.Any:
    """KernKoa's params as JSON (``None`` when the request had no fields)."""
    return None if params is None else {"fields": dict(params), "json": params.json}


class Scalars:
    """One value of each type, required or with a default."""

    def required(self, s: str, n: int, x: float, on: bool):
        """Every scalar type, all required."""
        return {"s": s, "n": n, "x": x, "on": on}

    def defaults(self, s: str = "text", n: int = 3, x: float = 0.5, on: bool = False):
        """Every scalar type, each with a default."""
        return {"s": s, "n": n, "x": x, "on": on}

    def optional(self, n: t.Optional[int] = None, s: str | None = None,  # noqa: UP045
                 must: int | None = 0):
        """Optional values: an empty one (or JSON null) is None."""
        return {"n": n, "s": s, "must": must}

    def untyped(self, a, b="default"):
        """No annotation: the value as sent."""
        return {"a": a, "b": b}


class Collections:
    """Lists of values, their items and their lengths constrained."""

    def lists(self, ids: list[int], words: list[str] = [], anything: list = []):  # noqa: B006
        """Every value of a repeated field, or a JSON array."""
        return {"ids": ids, "words": words, "anything": anything}

    def bounded(self, tags: Annotated[list[str], MinLen(1), MaxLen(3)],
                scores: list[Annotated[int, Ge(0), Le(10)]] = []):  # noqa: B006
        """A list of one to three tags, scores from 0 to 10."""
        return {"tags": tags, "scores": scores}

    def maybe(self, ids: t.Optional[list[int]] = None):  # noqa: UP045
        """A list, or null."""
        return {"ids": ids}


class Choices:
    """Enumerations with Literal."""

    def pick(self, size: Literal["S", "M", "L"], level: Literal[1, 2, 3] = 1,
             mode: Literal["on", "off"] | None = None):
        """One of a few strings, numbers, or nothing."""
        return {"size": size, "level": level, "mode": mode}

    def tags(self, sizes: list[Literal["S", "M", "L"]] = []):  # noqa: B006
        """A list of choices."""
        return {"sizes": sizes}


class Rules:
    """Every constraint marker, on numbers and strings."""

    def numbers(self, stars: Annotated[int, Ge(1), Le(5)],
                ratio: Annotated[float, Gt(0), Lt(1)] = 0.5,
                step: Annotated[int, MultipleOf(5)] = 0,
                half: Annotated[float, MultipleOf(0.5), Interval(ge=-10, le=10)] = 0.0):
        """Bounds inclusive and exclusive, multiples."""
        return {"stars": stars, "ratio": ratio, "step": step, "half": half}

    def strings(self, code: Annotated[str, MinLen(2), MaxLen(8), re.compile(r"^[A-Z0-9]+$")],
                name: Annotated[str, Len(1, 20), doc("Who is asking.")] = "anyone",
                note: Annotated[str | None, MaxLen(5)] = None):
        """Lengths, a pattern, a description, an optional constrained value."""
        return {"code": code, "name": name, "note": note}


class Uploads:
    """Files of a multipart body. Both take other fields too: a fuzzer cannot judge
    the other fields of a body that carries a file (it cannot validate the file),
    so it would report a surplus field sent empty, which no encoder puts on the wire."""

    def one(self, upload: FileStorage, **fields):
        """One uploaded file."""
        return {"name": upload.filename, "size": len(upload.read()), "fields": sorted(fields)}

    def many(self, docs: list[FileStorage], **fields):
        """Every file of a repeated field."""
        return {"names": [d.filename for d in docs], "fields": sorted(fields)}


class Open:
    """Methods that take what comes: params, **kwargs, *args."""

    def legacy(self, params=None):
        """KernKoa's params: any body, any fields."""
        return _plain(params)

    def both(self, n: int, params=None):
        """A named field and params."""
        return {"n": n, "params": _plain(params)}

    def rest(self, first: str = "", **fields):
        """A named field and every other one."""
        return {"first": first, "fields": fields}

    def path(self, first="none", *more):
        """Positional arguments from the path."""
        return {"first": first, "more": list(more)}

    def markers(self, a, /, b: int = 0, *, k: str = ""):
        """Positional-only and keyword-only parameters."""
        return {"a": a, "b": b, "k": k}

    def nothing(self):
        """Takes nothing at all."""
        return "nothing"


class Verbs:
    """HTTP methods other than the default GET, HEAD, POST."""

    @methods("PUT", "DELETE")
    def item(self, item_id: int, flag: bool = False):
        """PUT and DELETE only."""
        return {"item_id": item_id, "flag": flag}

    @methods("GET")
    def read(self, n: Annotated[int, Ge(0)] = 0):
        """GET (and HEAD) only."""
        return {"n": n}

    @methods("PATCH")
    def patch(self, note: Annotated[str, MaxLen(10)]):
        """PATCH only."""
        return {"note": note}


class Returns:
    """Each kind of return value, as the response table lists them."""

    def html(self):
        """A string: text/html."""
        return "<p>html</p>"

    def data(self):
        """A dict: application/json."""
        return {"ok": True}

    def number(self):
        """A number: application/json."""
        return 42

    def none(self):
        """None: application/json null."""
        return None

    def raw(self):
        """Bytes: application/octet-stream."""
        return b"\x00\x01"


class Tasks:
    """_celery methods: fields checked before queueing, statuses followed."""

    def sum_celery(self, task, a: Annotated[int, Ge(0), Le(1000)], b: int = 0, params=None):
        """Add two numbers on a worker."""
        task.progress(1, 1, "added")
        return a + b

    @task_options(soft_time_limit=5, time_limit=10)
    def echo_celery(self, task, **fields):
        """Return the fields on a worker."""
        return fields

    def fail_celery(self, task, reason: Literal["boom", "bang"] = "boom"):
        """Fail on a worker."""
        raise ValueError(reason)
