"""A controller in a folder, answering at /common/head/head."""

from kernkoa import *


class head:
    def index(self, params=None):
        """Greet."""
        return "hola mundo"
