"""The answer to an HTTP method that a route does not serve.

OPTIONS is answered 204 with an ``Allow`` header naming the served methods
and OPTIONS; any other method is a 405 whose ``Allow`` names the served ones
(RFC 9110). Controller routes and the kernel's own ``/status/<id>`` answer
alike: without this, a method the kernel's rule does not list would fall
through to the catch-all route and read as a 404.
"""

from __future__ import annotations

import typing as t

from flask import current_app
from werkzeug.wrappers import Response

from ..core.errors import MethodNotAllowed

#: The HTTP methods the kernel's catch-all and ``/status/<id>`` rules accept:
#: every one reaches the view, which answers OPTIONS and 405 itself (a method
#: left out of a rule would fall through to the catch-all's 404).
ROUTED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

def other_method(method: str, served: t.Collection[str]) -> Response:
    """Answer ``method``, which is not one of ``served``: OPTIONS with 204.

    :raises MethodNotAllowed: for any other method (405 with ``Allow``).
    """
    if method == "OPTIONS":
        allow = ", ".join(sorted({*served, "OPTIONS"}))
        return current_app.response_class(status=204, headers={"Allow": allow})
    raise MethodNotAllowed(valid_methods=sorted(served))
