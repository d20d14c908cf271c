"""The docs page in real headless Chromium, against a real server process."""

from __future__ import annotations

import typing as t

import pytest

from tests.support.catalogs import ControllerTree
from tests.support.chromium import screenshot
from tests.support.servers import LiveServer

SHOP = '''
    from typing import Optional


    class Cart:
        """The shopping cart."""

        def add(self, item: int, qty: int = 1, note: Optional[str] = None,
                tags: list[str] = []):
            """Add an item to the cart.

            Answers what it understood, as JSON.
            """
            return {"item": item, "qty": qty, "note": note, "tags": tags}

        def page(self, title: str = "<i>cart</i>"):
            """An HTML answer, shown as text on the docs page."""
            return "<h1>" + title + "</h1>"

        def report_celery(self, task, weeks: int = 2):
            """Builds a report on a worker."""
            return weeks

        def fail(self, flag: bool = False):
            """Always raises."""
            raise RuntimeError("no")
'''


@pytest.fixture
def server(tree: ControllerTree, serve: t.Callable[..., LiveServer]) -> LiveServer:
    """``kernkoa serve`` on a small shop catalog, with a broken file beside it."""
    tree.write("shop/cart.py", SHOP)
    tree.write("index.py", '''
        class index:
            def index(self):
                """The home page."""
                return "home"
    ''')
    tree.write("broken.py", "import a_module_that_does_not_exist\n")
    return serve(CATALOG=str(tree.root))


def _article(page: t.Any, url: str) -> t.Any:
    return page.locator(f'article[data-url="{url}"]')


def test_try_a_method_from_the_docs_page(server: LiveServer, page: t.Any) -> None:
    page.goto(server.base + "/_kernkoa/docs")
    assert page.locator("h2", has_text="/shop").count() == 1
    add = _article(page, "/shop/cart/Cart/add")
    assert "Add an item to the cart." in add.locator("pre.doc").inner_text()
    add.locator('input[name="item"]').fill("3")
    add.locator('input[name="qty"]').fill("2")
    add.locator('input[name="tags"]').fill("red, blue")
    add.locator("button[type=submit]").click()
    body = add.locator(".result .body")
    body.filter(has_text='"item": 3').wait_for()
    text = body.inner_text()
    assert '"qty": 2' in text and '"red"' in text and '"blue"' in text
    assert "200" in add.locator(".result .status").inner_text()

    html = _article(page, "/shop/cart/Cart/page")
    html.locator("select[name=__method]").select_option("POST")
    html.locator("button[type=submit]").click()
    # Shown as text, not rendered: the markup itself is on the page.
    html.locator(".result .body").filter(has_text="<h1><i>cart</i></h1>").wait_for()

    fail = _article(page, "/shop/cart/Cart/fail")
    fail.locator("button[type=submit]").click()
    fail.locator(".result.failed .body").filter(has_text="internal_server_error").wait_for()
    assert "500" in fail.locator(".result .status").inner_text()

    task = _article(page, "/shop/cart/Cart/report_celery")
    assert task.locator("button[type=submit]").inner_text() == "Start task"
    task.locator("button[type=submit]").click()
    task.locator(".result .body").filter(has_text='"status": "PENDING"').wait_for()
    assert "202" in task.locator(".result .status").inner_text()
    assert task.locator("a.task-link").get_attribute("href").startswith(server.base + "/status/")

    broken = page.locator("#broken").inner_text()
    # Named, its error kept for debug mode (the message may hold a secret).
    assert "controller/broken.py" in broken and "failed to load" in broken
    assert "a_module_that_does_not_exist" not in broken
    add.scroll_into_view_if_needed()
    screenshot(page, "docs-page.png")


def test_bad_input_shows_the_422_fields(server: LiveServer, page: t.Any) -> None:
    page.goto(server.base + "/_kernkoa/docs")
    add = _article(page, "/shop/cart/Cart/add")
    add.locator('input[name="item"]').fill("three")
    add.locator("button[type=submit]").click()
    add.locator(".result.failed .body").filter(has_text="expected an integer").wait_for()
    assert "422" in add.locator(".result .status").inner_text()
