"""A controller in a folder, answering at /common/head/head."""

from kernkoa import *


class head:
    """A greeting from a folder."""

    def index(self, params=None):
        """Greet."""
        return "hola mundo"
