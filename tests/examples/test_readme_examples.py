"""The KernKoa README examples, shipped in catalog/controller/, give the README's answers."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.support.shipped_catalog import FOLDERS

HTML = "text/html; charset=utf-8"

# Each case is sent with no Content-Type header and with the empty one nginx's
# uwsgi_params sends: the original KernKoa failed on the first.
CONTENT_TYPES = [None, ""]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/fasthelloworld/fastHelloClass/fastHelloWorld", b"hello world!!."),
        ("/fasthelloworld/fastHelloClass/fastHelloWorldWithParameters"
         "?hello=world&with=parameters", b"hello = world<br>with = parameters<br>"),
        ("/fasthelloworld/fastHelloClass/fastHelloWorldWithParameters", b"Hello World"),
        ("/examples/folderexmple/fastHelloClass/fastHelloWorld", b"hello world!!."),
        ("/examples/folderexmple/fastHelloClass/fastHelloWorldWithParameters"
         "?hello=world&with=parameters", b"hello = world<br>with = parameters<br>"),
        ("/folderexmple/fastHelloClass/fastHelloWorld", b"hello world!!."),
        (FOLDERS + "/urllibrary/urlclass/urlmethod", b"hello world!!."),
        (FOLDERS + "/library/urlclass/urlmethod", b"hello world!!."),
        (FOLDERS + "/urllibrary/urlclass/urlmethod2?param1=1&param2=2&param3=3&param4=4",
         b"param1 = 1<br>param2 = 2<br>param3 = 3<br>param4 = 4<br>"),
        ("/common/head/head", b"hola mundo"),
    ],
)
def test_readme_example(client: FlaskClient, url: str, body: bytes,
                        content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert response.content_type == HTML
    assert response.data == body


@pytest.mark.parametrize("url", ["/", "/index/index"])
def test_index_page(client: FlaskClient, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    assert response.content_type == HTML
    assert b"KernKoa is working okay!." in response.data


def test_post_reaches_the_same_method(client: FlaskClient) -> None:
    response = client.post("/fasthelloworld/fastHelloClass/fastHelloWorld")
    assert response.data == b"hello world!!."


def test_echoed_parameters_are_escaped(client: FlaskClient) -> None:
    response = client.get("/fasthelloworld/fastHelloClass/fastHelloWorldWithParameters",
                          query_string={"<script>": "<b>x</b>"})
    assert response.data == b"&lt;script&gt; = &lt;b&gt;x&lt;/b&gt;<br>"


def test_form_fields_are_params_too(client: FlaskClient) -> None:
    response = client.post(FOLDERS + "/urllibrary/urlclass/urlmethod2",
                           data={"a": "1", "b": "2"})
    assert response.data == b"a = 1<br>b = 2<br>"
