"""The guestbook's model: the ``messages`` table of the default database.

Every value reaches the database as a bound parameter (``:user``), never as
part of the SQL text, so ``'); DROP TABLE messages; --`` is stored as the
text it is.
"""

from datetime import UTC
from datetime import datetime

from kernkoa import *

#: The guestbook's table, as KernKoa had it: messages(id, user, message, date).
#: IF NOT EXISTS: two worker processes may both find the table missing at once.
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    message TEXT NOT NULL,
    date TEXT NOT NULL
)
"""


class model_message:
    """Reads and writes guestbook messages."""

    def __init__(self, database=None):
        self.db = dbs[database or config.defaultDatabase]
        if not self.db.checkTable("messages"):
            self.db.query(CREATE_TABLE)

    def getMessages(self, limit=100):
        """The newest ``limit`` messages, newest first, as dicts."""
        rows = self.db.query(
            "SELECT id, user, message, date FROM messages ORDER BY id DESC LIMIT :limit",
            {"limit": int(limit)},
        )
        columns, records = rows[0], rows[1:]
        return [dict(zip(columns, record, strict=True)) for record in records]

    def countMessages(self):
        """How many messages there are."""
        return self.db.getValue("SELECT count(*) FROM messages")

    def insertMessage(self, user, message):
        """Store one message; returns the number of rows inserted (1)."""
        return self.db.query(
            "INSERT INTO messages (user, message, date) VALUES (:user, :message, :date)",
            {
                "user": user,
                "message": message,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
