"""The hostile-input run, in its own process: ``python tests/hostile/hostile_run.py WORKDIR N``.

It builds three apps (a test catalog open to all, the same catalog behind
jwt_auth + basic_auth + cors with ``AUTH_DEFAULT=required``, and the shipped
catalog), warms them up, then installs a Python audit hook (for good: hooks
cannot be removed, hence the separate process) and sends N generated requests
per Hypothesis test. Every answer must be a documented status, errors must be
the JSON envelope without a traceback, and no module may be imported from,
nor any file opened in, a place outside the allowed folders. The last line
printed is a JSON report that ``test_requests.py`` checks.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import sys
import sysconfig
import tempfile
import time
import traceback
import typing as t
from pathlib import Path

#: The project root: the helpers are imported as ``tests.support``.
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# Hypothesis keeps a cache even without a database: in the work folder (temp),
# never in the project.
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(sys.argv[1], ".hypothesis")

from hypothesis import HealthCheck  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.support.auth import CONTROLLERS  # noqa: E402
from tests.support.auth import KEY  # noqa: E402
from tests.support.auth import token  # noqa: E402

#: Every status the kernel may answer with.
DOCUMENTED = {200, 202, 204, 303, 400, 401, 403, 404, 405, 413, 415, 422, 429}

ZOO = '''
from kernkoa import *


class Zoo:
    def index(self, params):
        return {"fields": sorted(params) if params else None}

    def typed(self, n: int, ratio: float = 1.0, flag: bool = False, tags: list[str] = []):
        return {"n": n, "ratio": ratio, "flag": flag, "tags": tags}

    def args(self, a, b="x"):
        return [a, b]

    def kw(self, **kwargs):
        return sorted(kwargs)

    def html(self, name: str = ""):
        return "<p>" + escape(name) + "</p>"

    def raw(self):
        return b"\\x00\\x01"

    def stream(self):
        def chunks():
            yield "a"
            yield "b"
        return chunks()

    def status(self):
        return {"created": True}, 201

    @methods("PUT", "DELETE")
    def put(self, params):
        return None

    def work_celery(self, task, n: int = 1):
        return n

    def _private(self):
        return "never"

    @property
    def prop(self):
        return "never"

    @staticmethod
    def static():
        return "never"
'''

NASTY = [
    "", ".", "..", "...", "%2e%2e", "%2E%2E", "%2f", "%2F", "%5c", "..%2f", "%00", "~", "-",
    "__init__", "__class__", "__dict__", "_private", "prop", "static", "os", "sys", "system",
    "getcwd", "exit", "builtins", "eval", "this", "status", "images", "pdfs", "_kernkoa",
    "static", "etc", "passwd", "config", "kernkoa", "kernel", "catalog", "controller",
    "index.py", "zoo.py", "Zoo", "zoo", "shop", "Reports", "purge", "summary", "Open", "Pub",
    "private", "Jobs", "open_celery", "default_celery", "build_celery", "typed", "args", "kw",
    "html", "raw", "stream", "put", "work_celery", "index", "message", "insert", "deep", "er",
    "mod", "M", "go", "fasthelloworld", "folder1", "folder2", "42", "1e9", "-1", "x" * 200,
    "é", "%C3%A9", "%ff", "a b", "a;b", "a:b", "a\\b", "*", "?", "#", "&", "=", "%",
    "00000000-0000-4000-8000-000000000000",
]

SAFE_TEXT = st.characters(blacklist_categories=("Cc", "Cs"), max_codepoint=0x2FFF)
LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def build(workdir: Path) -> tuple[list[t.Any], dict[str, Path]]:
    """The apps under test, and the folders they may touch."""
    os.environ["KERNKOA_VAR"] = str(workdir / "var")
    from kernel import create_app
    from kernel.auth.users import UserStore
    from kernel.core.settings import PROJECT_ROOT

    catalog = workdir / "catalog"
    (catalog / "controller" / "deep" / "er").mkdir(parents=True, exist_ok=True)
    (catalog / "controller" / "shop.py").write_text(CONTROLLERS)
    (catalog / "controller" / "zoo.py").write_text(ZOO)
    (catalog / "controller" / "deep" / "er" / "mod.py").write_text(
        "class M:\n    def go(self, x: int = 0):\n        return x\n")
    images, pdfs = workdir / "images", workdir / "pdfs"
    images.mkdir(exist_ok=True)
    pdfs.mkdir(exist_ok=True)
    (images / "a.png").write_bytes(b"\x89PNG\r\n")
    (pdfs / "a.pdf").write_bytes(b"%PDF-1.4\n")
    UserStore(workdir / "var" / "users.json").add("alice", "correct horse", ["reports"])

    static = {"IMAGES": str(images), "PDFS": str(pdfs)}
    apps = [
        create_app({"CATALOG": str(catalog), **static}),
        create_app({"CATALOG": str(catalog), "ADDONS": ["cors", "jwt_auth", "basic_auth"],
                    "HMACKEY": KEY, "AUTH_DEFAULT": "required",
                    "CORS_ORIGINS": ["https://app.example.org"], **static}),
        create_app(static),
    ]
    allowed = {
        "test catalog": catalog,
        "shipped catalog": PROJECT_ROOT / "catalog",
        "stdlib": Path(sysconfig.get_paths()["stdlib"]),
        "platstdlib": Path(sysconfig.get_paths()["platstdlib"]),
        "site-packages": Path(sysconfig.get_paths()["purelib"]),
        "platform site-packages": Path(sysconfig.get_paths()["platlib"]),
        "templates": PROJECT_ROOT / "templates",
        "VAR": workdir / "var",
        "temp": Path(tempfile.gettempdir()),
    }
    return apps, {name: path.resolve() for name, path in allowed.items()}


class Audit:
    """Records file opens and imports outside the allowed folders while ``on``."""

    def __init__(self, allowed: dict[str, Path], project: Path) -> None:
        self.roots = [str(path) + os.sep for path in allowed.values()]
        self.project = str(project.resolve()) + os.sep
        # Inside the project only the allowed folders that lie in it count: the
        # temp folder may hold the whole checkout (a CI clone under /tmp).
        self.project_roots = [root for root in self.roots if root.startswith(self.project)]
        self.on = False
        self.outside: list[str] = []
        self.imports: list[str] = []

    def _inside(self, path: str) -> bool:
        full = os.path.realpath(os.path.abspath(path)) + os.sep
        roots = self.project_roots if full.startswith(self.project) else self.roots
        return any(full.startswith(root) for root in roots)

    @staticmethod
    def _from_a_request() -> bool:
        """Whether the nearest caller we know is a request (the kernel at work) rather
        than Hypothesis itself, which reads test sources to name its examples."""
        frame = sys._getframe(2)
        while frame is not None:
            filename = frame.f_code.co_filename
            if frame.f_code is Checker.send.__code__:
                return True
            if f"{os.sep}hypothesis{os.sep}" in filename:
                return False
            frame = frame.f_back
        return True

    def hook(self, event: str, args: tuple[t.Any, ...]) -> None:
        if not self.on:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if not self._inside(path) and self._from_a_request():
                self.outside.append(f"open {path}")
        elif event == "sqlite3.connect" and isinstance(args[0], (str, os.PathLike)):
            path = os.fspath(args[0])
            if path != ":memory:" and not self._inside(path):
                self.outside.append(f"sqlite3.connect {path}")
        elif event == "import":
            self.imports.append(str(args[0]))


def warm_up(apps: list[t.Any]) -> None:
    """One request of each kind per app, so one-time imports and files (mimetypes,
    Celery's transport...) are done before the audit starts."""
    good = {"Authorization": f"Bearer {token(scope='reports admin')}"}
    for app in apps:
        client = app.test_client()
        for path in ("/", "/images/a.png", "/pdfs/a.pdf", "/zoo/Zoo/stream",
                     "/status/00000000-0000-4000-8000-000000000000", "/zoo/Zoo/html?name=x",
                     "/message/message/message", "/fasthelloworld/fasthelloworld/index"):
            client.get(path, headers=good).close()
        client.post("/zoo/Zoo/work_celery", headers=good).close()
        client.post("/zoo/Zoo/typed", json={"n": 1}, headers=good).close()
        client.post("/zoo/Zoo/kw", data={"a": "1"}, headers=good).close()
        client.post("/zoo/Zoo/kw", data={"f": (__import__("io").BytesIO(b"x"), "f.txt")},
                    content_type="multipart/form-data", headers=good).close()
        client.get("/zoo/Zoo", headers={"Authorization": "Basic " + b64("alice:nope")}).close()


class Checker:
    """Sends requests and keeps the tally."""

    def __init__(self, apps: list[t.Any]) -> None:
        self.clients = [app.test_client() for app in apps]
        self.statuses: collections.Counter[int] = collections.Counter()
        self.count = 0
        self.refused: list[str] = []

    def send(self, which: int, method: str, path: str, query: str, headers: dict[str, str],
             body: bytes | None) -> None:
        client = self.clients[which]
        if "?" in path and query:
            path, query = f"{path}&{query}", ""
        try:
            response = client.open(path, method=method, query_string=query or None,
                                   headers=headers, data=body)
        except (ValueError, UnicodeError, TypeError) as error:
            # The test client refused to build the request: nothing was sent.
            self.statuses[-1] += 1
            if len(self.refused) < 5:
                self.refused.append(f"{type(error).__name__}: {error}"[:200])
            return
        try:
            status = response.status_code
            data = response.get_data()
        finally:
            response.close()
        self.count += 1
        self.statuses[status] += 1
        where = f"app {which}: {method} {path!r} ?{query!r} {headers!r} body={body!r:.200}"
        assert status in DOCUMENTED, f"{status} for {where}: {data[:500]!r}"
        assert b"Traceback" not in data, f"traceback for {where}"
        if status >= 400 and method != "HEAD":
            envelope = json.loads(data)["error"]
            assert envelope["status"] == status and envelope["code"], where


def strategies() -> dict[str, t.Any]:
    segment = st.one_of(st.sampled_from(NASTY), st.text(SAFE_TEXT, max_size=16))
    path = st.builds(lambda lead, parts: lead + "/".join(parts),
                     st.sampled_from(["/", "//", "/./", "/../"]),
                     st.lists(segment, max_size=9))
    query = st.one_of(
        st.just(""),
        st.lists(st.tuples(st.sampled_from(["n", "ratio", "flag", "tags", "a", "b", "x",
                                            "params", "format", "image", "user", "message"]),
                           st.text(SAFE_TEXT, max_size=12)), max_size=6)
        .map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
        st.text(LATIN1, max_size=60),
        st.integers(1000, 1100).map(lambda n: "&".join(["a=1"] * n)),
    )
    good = token(sub="ann", scope="reports admin")
    authorization = st.one_of(
        st.sampled_from([
            f"Bearer {good}", f"Bearer {token(scope='nothing')}", "Bearer x.y.z", "Bearer",
            f"Bearer {token(exp=1)}", f"Bearer {good[:-3]}abc", f"bearer {good}",
            "Basic " + b64("alice:correct horse"), "Basic " + b64("alice:wrong"),
            "Basic !!!", "Digest x", "",
        ]),
        st.text(LATIN1, max_size=40),
        st.text(LATIN1, max_size=40).map(lambda s: "Bearer " + s),
    )
    content_type = st.sampled_from([
        "application/json", "application/x-www-form-urlencoded", "text/plain",
        "multipart/form-data; boundary=xyz", "multipart/form-data", "application/json; x=y",
        "application/octet-stream", "garbage/;;;", "",
    ])
    header_value = st.text(LATIN1, max_size=40)
    headers = st.fixed_dictionaries({}, optional={
        "Authorization": authorization,
        "Content-Type": content_type,
        "Accept": st.sampled_from(["text/html", "application/json", "*/*", "text/html;q=0.1",
                                   "garbage"]),
        "Origin": st.sampled_from(["https://app.example.org", "https://evil.example", "null"]),
        "Access-Control-Request-Method": st.sampled_from(["POST", "GET", "TRACE"]),
        "X-Request-Id": header_value,
        "Cookie": header_value,
        "X-Anything": header_value,
    })
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
        | st.text(SAFE_TEXT, max_size=10),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["n", "a", "b", "tags", "flag", "x", "params"])
                          | st.text(SAFE_TEXT, max_size=5), children, max_size=4),
        max_leaves=12,
    )
    body = st.one_of(
        st.none(),
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.lists(st.tuples(st.text(SAFE_TEXT, max_size=6), st.text(SAFE_TEXT, max_size=6)),
                 max_size=5).map(lambda p: "&".join(f"{k}={v}" for k, v in p).encode()),
        st.just(b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--xyz--\r\n"),
        st.just(b"x" * (17 * 1024 * 1024)),
    )
    method = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                              "TRACE", "PROPFIND", "get"])
    return {"path": path, "query": query, "headers": headers, "body": body, "method": method}


def run(workdir: Path, examples: int) -> dict[str, t.Any]:
    apps, allowed = build(workdir)
    warm_up(apps)
    audit = Audit(allowed, ROOT)
    sys.addaudithook(audit.hook)

    # Hypothesis reads the source of every local module it has not seen yet on
    # its first example (to collect constants): let it do so before the audit.
    @settings(max_examples=1, database=None)
    @given(st.integers())
    def hypothesis_warm_up(number: int) -> None:
        pass

    hypothesis_warm_up()

    # The hook works: a file outside every allowed folder is seen.
    audit.on = True
    with open(ROOT / "config.py", "rb"):
        pass
    audit.on = False
    control = list(audit.outside)
    audit.outside.clear()

    checker = Checker(apps)
    s = strategies()
    config = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                      suppress_health_check=list(HealthCheck))
    failures: list[str] = []

    @config
    @given(which=st.integers(0, 2), method=s["method"], path=s["path"], query=s["query"],
           headers=s["headers"], body=s["body"])
    def anything(which: int, method: str, path: str, query: str, headers: dict[str, str],
                 body: bytes | None) -> None:
        checker.send(which, method, path, query, headers, body)

    @config
    @given(which=st.integers(0, 2), path=s["path"])
    def paths_only(which: int, path: str) -> None:
        checker.send(which, "GET", path, "", {}, None)

    @config
    @given(which=st.integers(0, 2), method=st.sampled_from(["POST", "PUT"]),
           route=st.sampled_from(["/zoo/Zoo", "/zoo/Zoo/typed", "/zoo/Zoo/kw", "/zoo/Zoo/args/1",
                                  "/zoo/Zoo/put", "/zoo/Zoo/work_celery", "/shop/Reports",
                                  "/message/message/message/insert", "/deep/er/mod/M/go"]),
           query=s["query"], headers=s["headers"], body=s["body"])
    def bodies(which: int, method: str, route: str, query: str, headers: dict[str, str],
               body: bytes | None) -> None:
        checker.send(which, method, route, query, headers, body)

    started = time.monotonic()
    audit.on = True
    modules_before = set(sys.modules)
    for test in (anything, paths_only, bodies):
        try:
            test()
        except Exception:
            failures.append(traceback.format_exc(limit=3)[-3000:])
    audit.on = False
    new_modules = [name for name in set(sys.modules) - modules_before
                   if getattr(sys.modules[name], "__file__", None)
                   and not audit._inside(sys.modules[name].__file__)]
    return {
        "requests": checker.count,
        "seconds": round(time.monotonic() - started, 1),
        "statuses": {str(k): v for k, v in sorted(checker.statuses.items())},
        "failures": failures,
        "outside": sorted(set(audit.outside)),
        "modules_outside": sorted(new_modules),
        "imports_seen": len(audit.imports),
        "refused_by_test_client": checker.refused,
        "control": control,
    }


if __name__ == "__main__":
    report = run(Path(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps(report))
