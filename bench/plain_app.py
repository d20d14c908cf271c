"""The hand-written Flask app every KernKoa figure is compared with.

Each route returns exactly what the matching method of the benchmark catalog
(:mod:`bench.catalog`) returns, written the way a Flask user would write it.
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import request

app = Flask(__name__)


@app.route("/hello", methods=["GET", "POST"])
def hello() -> str:
    """GET with no params."""
    return "hello world!!."


@app.route("/greet")
def greet() -> str:
    """GET with three query params."""
    args = request.args
    return args["a"] + "-" + args["b"] + "-" + args["c"]


@app.route("/echo", methods=["POST"])
def echo() -> dict[str, t.Any]:
    """POST with a JSON body of three fields."""
    body = request.get_json()
    return {"a": int(body["a"]), "b": str(body["b"]), "c": bool(body["c"])}


@app.route("/add", methods=["POST"])
def add() -> dict[str, t.Any]:
    """POST with two JSON arrays, added element by element (what part 11 asks TabPy)."""
    body = request.get_json()
    return {"response": [float(a) + float(b) for a, b in zip(body["x"], body["y"], strict=False)]}
