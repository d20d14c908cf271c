"""A sample catalog with routable and unroutable things side by side, and its routes.

The route listing (``tests/catalog/test_registry.py``) and ``kernkoa routes``
(``tests/cli/test_main.py``) are both checked against it.
"""

from __future__ import annotations

from tests.support.catalogs import ControllerTree

#: A catalog with routable and unroutable things side by side.
CATALOG = {
    "index.py": """
        class index:
            def index(self):
                '''The home page.

                More text.'''
                return "home"
    """,
    "shop/cart.py": """
        import json
        from flask import Response
        from kernkoa import methods

        class Base:
            def shared(self):
                return "shared"

        class Cart(Base):
            def add(self, item: int):
                return item

            @methods("PUT")
            def replace(self):
                return "put"

            def order_celery(self, task):
                return "later"

            def _private(self):
                pass

            @property
            def prop(self):
                return 1

            @staticmethod
            def static():
                pass

            @classmethod
            def klass(cls):
                pass

            class Nested:
                def index(self):
                    pass

        class Encoder(json.JSONEncoder):
            pass

        class _Hidden:
            def index(self):
                pass

        Alias = Cart
    """,
    "status.py": """
        class C:
            def m(self):
                pass
    """,
    "bad-name.py": """
        class C:
            def m(self):
                pass
    """,
    "_private.py": """
        class C:
            def m(self):
                pass
    """,
    "broken.py": "class C(\n",
}

EXPECTED_ROUTES = [
    "/index/index/index",
    "/shop/cart/Base/shared",
    "/shop/cart/Cart/add",
    "/shop/cart/Cart/order_celery",
    "/shop/cart/Cart/replace",
    "/shop/cart/Cart/shared",
]


def write_catalog(tree: ControllerTree) -> None:
    """Write :data:`CATALOG` into ``tree``."""
    for name, source in CATALOG.items():
        tree.write(name, source)
