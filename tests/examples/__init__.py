"""The shipped examples and documents keep their word: the README examples of the shipped
catalog, the guestbook, every code block of README.md and docs/*.md."""
