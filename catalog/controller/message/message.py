"""The KernKoa guestbook: an MVC example with a model, a template and JSON answers.

- ``GET /message/message/message/index``: the page, listing the messages.
- ``POST /message/message/message/insert`` with ``user`` and ``message``:
  validates both, stores the message, answers ``{"inserted": 1, "status": "OK"}``.
  Invalid input is a 422 error envelope naming each field, and nothing is stored.
"""

from kernkoa import *

#: Longest accepted name and message, in characters.
MAX_USER = 64
MAX_MESSAGE = 1000


def _problems(user, message):
    """The 422 ``fields`` entries for invalid input (empty when it is valid)."""
    problems = []
    for name, value, limit in (("user", user, MAX_USER), ("message", message, MAX_MESSAGE)):
        if not value.strip():
            problems.append({"name": name, "source": "request", "message": "must not be empty"})
        elif len(value) > limit:
            problems.append({"name": name, "source": "request",
                             "message": f"must be at most {limit} characters"})
    return problems


class message:
    """The guestbook: list and add messages."""

    def index(self, params=None):
        """The guestbook page."""
        model = load.model("model_message", "message")
        return render("message/index.html", messages=model.getMessages(),
                      total=model.countMessages(), max_user=MAX_USER, max_message=MAX_MESSAGE)

    @methods("POST")
    def insert(self, user: str, message: str):
        """Add a message (validated before anything is stored)."""
        problems = _problems(user, message)
        if problems:
            raise ParameterError(problems)
        model = load.model("model_message", "message")
        inserted = model.insertMessage(user.strip(), message.strip())
        return {"inserted": inserted, "status": "OK"}
