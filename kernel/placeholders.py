"""Stand-ins for the helpers controllers may name before this kernel provides them.

Each raises a clear 501 error as soon as a controller uses it, instead of a
``NameError`` or an ``AttributeError`` deep inside the call.
"""

from __future__ import annotations

import typing as t

from .errors import NotAvailableYet


class NotYetAvailable:
    """A name controllers can import whose every use raises :class:`NotAvailableYet`.

    :param name: the helper's name, for the message.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self, *args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise NotAvailableYet(f"{self._name} is not available yet in this KernKoa kernel.")

    __call__ = _refuse
    __getitem__ = _refuse
    __iter__ = _refuse
    __contains__ = _refuse

    def __getattr__(self, attribute: str) -> t.Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        self._refuse()

    def __repr__(self) -> str:
        return f"<{self._name}: not available yet>"


#: ``exeTask(self, "name_celery", params)``: start a Celery task.
exeTask = NotYetAvailable("exeTask")
