"""The page served at "/": proof that the kernel is running."""

from kernkoa import *


class index:
    """The site's home."""

    def index(self, params=None):
        """The KernKoa welcome page."""
        return render("index.html", url=config.url)
