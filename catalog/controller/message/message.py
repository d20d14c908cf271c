"""The KernKoa guestbook: an MVC example with a model, a template and JSON answers.

- ``GET /message/message/message/index``: the page, listing the messages.
- ``POST /message/message/message/insert`` with ``user`` and ``message``:
  stores the message, answers ``{"inserted": 1, "status": "OK"}``. Their
  annotations say what they may hold (not blank, at most so many characters):
  the kernel refuses anything else with a 422 naming each field, before the
  method runs, and the OpenAPI document shows the same rules.
"""

import re
from typing import Annotated

from annotated_types import MaxLen

from kernkoa import *

#: Longest accepted name and message, in characters.
MAX_USER = 64
MAX_MESSAGE = 1000

#: What a name or message may not consist of alone.
BLANKS = " \t\n\r\f\v"

#: Some character besides those: a blank name or message is refused. The
#: classes are spelled out, so a browser, the OpenAPI document and this
#: kernel read the pattern alike; it must match the whole value.
NOT_BLANK = re.compile(r"[\s\S]*[^ \t\n\r\f\v][\s\S]*")


class message:
    """The guestbook: list and add messages."""

    def index(self, params=None):
        """The guestbook page."""
        model = load.model("model_message", "message")
        return render("message/index.html", messages=model.getMessages(),
                      total=model.countMessages(), max_user=MAX_USER, max_message=MAX_MESSAGE)

    @methods("POST")
    def insert(self, user: Annotated[str, MaxLen(MAX_USER), NOT_BLANK],
               message: Annotated[str, MaxLen(MAX_MESSAGE), NOT_BLANK]):
        """Add a message (its fields checked by their constraints before anything is stored)."""
        model = load.model("model_message", "message")
        inserted = model.insertMessage(user.strip(BLANKS), message.strip(BLANKS))
        return {"inserted": inserted, "status": "OK"}
