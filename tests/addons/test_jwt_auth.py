"""jwt_auth and per-route access: every bad token a 401, a missing scope a 403."""

from __future__ import annotations

import time
import typing as t
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient

from kernel.core.errors import AddonError
from kernel.core.errors import AuthConfigError
from tests.support.auth import CONTROLLERS
from tests.support.auth import KEY
from tests.support.auth import bearer
from tests.support.auth import forged
from tests.support.auth import token
from tests.support.catalogs import ControllerTree
from tests.support.envelopes import assert_error


@pytest.fixture
def jwt_app(tree: ControllerTree, make_app: t.Callable[..., Flask]) -> t.Callable[..., Flask]:
    tree.write("shop.py", CONTROLLERS)

    def make(**overrides: t.Any) -> Flask:
        return make_app(**{"ADDONS": ["jwt_auth"], "HMACKEY": KEY, **overrides})

    return make


@pytest.fixture
def client(jwt_app: t.Callable[..., Flask]) -> FlaskClient:
    return jwt_app().test_client()


def assert_401(response: t.Any, invalid: bool = True) -> None:
    error = assert_error(response, 401, "invalid_credentials" if invalid else "unauthorized")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="kernkoa"')
    assert ('error="invalid_token"' in challenge) is invalid
    assert "detail" not in error


def test_missing_token(client: FlaskClient) -> None:
    assert_401(client.get("/shop/Reports"), invalid=False)


def test_good_token_passes(client: FlaskClient) -> None:
    response = client.get("/shop/Reports", headers=bearer(token(sub="ann", scope="reports x")))
    assert response.status_code == 200
    assert response.get_json() == {"reports": True, "who": "ann", "scopes": ["reports", "x"]}
    listed = client.get("/shop/Reports", headers=bearer(token(sub="bo", scopes=["reports"])))
    assert listed.status_code == 200


def test_expired_token(client: FlaskClient) -> None:
    old = token(scope="reports", exp=int(time.time()) - 10)
    assert_401(client.get("/shop/Reports", headers=bearer(old)))
    assert "expired" in client.get("/shop/Reports", headers=bearer(old)).get_json()["error"][
        "message"]


def test_token_without_exp(client: FlaskClient) -> None:
    assert_401(client.get("/shop/Reports", headers=bearer(token(scope="reports", exp=None))))


def test_wrong_key(client: FlaskClient) -> None:
    other = "9" * 64
    assert_401(client.get("/shop/Reports", headers=bearer(token(other, scope="reports"))))


def test_alg_none(client: FlaskClient) -> None:
    claims = {"scope": "reports admin", "exp": int(time.time()) + 60}
    for alg in ("none", "None", "NONE"):
        unsigned = forged({"alg": alg, "typ": "JWT"}, claims, None)
        assert_401(client.get("/shop/Reports", headers=bearer(unsigned)))


def _rsa_pair() -> tuple[bytes, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def test_rs256_and_key_confusion(client: FlaskClient, jwt_app: t.Callable[..., Flask]) -> None:
    private_pem, public_pem = _rsa_pair()
    claims = {"scope": "reports", "exp": int(time.time()) + 60}
    # A real RS256 token: refused, only HS256 is accepted.
    assert_401(client.get("/shop/Reports", headers=bearer(token(private_pem.decode(),
                                                                algorithm="RS256", **claims))))
    # The classic confusion: HS256 signed with a public key as the HMAC secret.
    confused = forged({"alg": "HS256", "typ": "JWT"}, claims, public_pem)
    assert_401(client.get("/shop/Reports", headers=bearer(confused)))
    # Even if an operator put that public key in as the shared key: refused at start-up.
    with pytest.raises(AddonError, match="public/private key"):
        jwt_app(HMACKEY=public_pem.decode())


def test_tampered_payload(client: FlaskClient) -> None:
    good = token(sub="ann", scope="reports")
    header, _, signature = good.split(".")
    evil = forged({"alg": "HS256"}, {"sub": "ann", "scope": "reports admin",
                                     "exp": int(time.time()) + 60}, b"x").split(".")[1]
    assert_401(client.get("/shop/Reports/purge", headers=bearer(f"{header}.{evil}.{signature}")))


@pytest.mark.parametrize("value", ["", "x", "a.b", "a.b.c", "...", "Bearer", "é" * 10,
                                   "x" * 10_000])
def test_malformed_tokens(client: FlaskClient, value: str) -> None:
    headers = {"Authorization": f"Bearer {value}".encode().decode("latin-1")}
    response = client.get("/shop/Reports", headers=headers)
    assert response.status_code == 401
    assert_error(response, 401)


def test_missing_scope_is_403(client: FlaskClient) -> None:
    response = client.get("/shop/Reports/purge", headers=bearer(token(scope="reports")))
    assert_error(response, 403, "insufficient_scope")
    assert "admin" in response.get_json()["error"]["message"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    both = client.get("/shop/Reports/purge", headers=bearer(token(scope="reports admin")))
    assert both.get_json() == {"purged": True}
    # The class's scope is needed too, not only the method's.
    assert_error(client.get("/shop/Reports/purge", headers=bearer(token(scope="admin"))), 403)


def test_public_method_in_a_protected_class(client: FlaskClient) -> None:
    assert client.get("/shop/Reports/summary").get_json() == {"summary": True}


def test_open_routes_stay_open_but_check_credentials_sent(client: FlaskClient) -> None:
    assert client.get("/shop/Open").get_json() == {"open": True, "who": None}
    signed = client.get("/shop/Open", headers=bearer(token(sub="ann")))
    assert signed.get_json() == {"open": True, "who": "ann"}
    assert_401(client.get("/shop/Open", headers=bearer("garbage")))
    # A scheme no add-on handles is ignored on an open route.
    other = client.get("/shop/Open", headers={"Authorization": "Digest abc"})
    assert other.status_code == 200


def test_auth_default_required(jwt_app: t.Callable[..., Flask]) -> None:
    client = jwt_app(AUTH_DEFAULT="required").test_client()
    assert_401(client.get("/shop/Open"), invalid=False)
    assert client.get("/shop/Open", headers=bearer(token(sub="ann"))).status_code == 200
    assert client.get("/shop/Pub").get_json() == {"public": True}
    assert_401(client.get("/shop/Pub/private"), invalid=False)
    assert client.get("/shop/Reports/summary").status_code == 200
    # Paths that name nothing, kernel pages and static files: the default,
    # so an anonymous caller cannot tell which routes exist.
    for path in ("/nothing/Here/at_all", "/_kernkoa/routes", "/images/x.png", "/status/x"):
        assert_401(client.get(path), invalid=False)
        assert_error(client.get(path, headers=bearer(token())), 404)


def test_requires_without_auth_addon_fails_closed(tree: ControllerTree,
                                                  make_app: t.Callable[..., Flask]) -> None:
    tree.write("shop.py", CONTROLLERS)
    client = make_app().test_client()
    assert client.get("/shop/Open").status_code == 200
    response = client.get("/shop/Reports")
    assert_error(response, 401, "unauthorized")
    assert "WWW-Authenticate" not in response.headers
    with pytest.raises(AuthConfigError, match="no auth add-on"):
        make_app(AUTH_DEFAULT="required")
    with pytest.raises(AuthConfigError, match="AUTH_DEFAULT"):
        make_app(AUTH_DEFAULT="maybe")


def test_audience(jwt_app: t.Callable[..., Flask]) -> None:
    client = jwt_app(JWT_AUDIENCE="kernkoa-api").test_client()
    assert_401(client.get("/shop/Reports", headers=bearer(token(scope="reports"))))
    assert_401(client.get("/shop/Reports", headers=bearer(token(scope="reports", aud="other"))))
    good = token(scope="reports", aud="kernkoa-api")
    assert client.get("/shop/Reports", headers=bearer(good)).status_code == 200


def test_key_from_file_and_start_up_errors(tree: ControllerTree, tmp_path: Path,
                                           make_app: t.Callable[..., Flask],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tree.write("shop.py", CONTROLLERS)
    missing = tmp_path / "nokey"
    with pytest.raises(AddonError, match="has no key"):
        make_app(ADDONS=["jwt_auth"], HMACKEY_FILE=str(missing))
    (tmp_path / "hmackey").write_text(KEY + "\n")
    client = make_app(ADDONS=["jwt_auth"], HMACKEY_FILE=str(tmp_path / "hmackey")).test_client()
    assert client.get("/shop/Reports", headers=bearer(token(scope="reports"))).status_code == 200
    (tmp_path / "short").write_text("tooshort")
    with pytest.raises(AddonError, match="shorter than 32 bytes"):
        make_app(ADDONS=["jwt_auth"], HMACKEY_FILE=str(tmp_path / "short"))
    for trivial in ("changeme" * 5, "x" * 40):
        with pytest.raises(AddonError, match="well-known or trivial"):
            make_app(ADDONS=["jwt_auth"], HMACKEY=trivial)
    # KERNKOA_HMACKEY holds the key itself, and wins over the file.
    other = "0123456789abcdef" * 3
    monkeypatch.setenv("KERNKOA_HMACKEY", other)
    client = make_app(ADDONS=["jwt_auth"], HMACKEY_FILE=str(missing)).test_client()
    assert client.get("/shop/Reports",
                      headers=bearer(token(other, scope="reports"))).status_code == 200


def test_task_status_follows_the_task_route(jwt_app: t.Callable[..., Flask]) -> None:
    client = jwt_app().test_client()
    good = bearer(token(sub="ann", scope="reports"))
    assert_401(client.post("/shop/Reports/build_celery"), invalid=False)
    started = client.post("/shop/Reports/build_celery", headers=good)
    assert started.status_code == 202
    status = f"/status/{started.get_json()['id']}"
    assert client.get(status, headers=good).get_json() == {"status": "PENDING"}
    assert_401(client.get(status), invalid=False)
    assert_error(client.get(status, headers=bearer(token(scope="other"))), 403)
    assert_401(client.delete(status), invalid=False)
    # Its event stream follows the same rule as its status.
    assert_401(client.get(status + "/events"), invalid=False)
    assert_error(client.get(status + "/events", headers=bearer(token(scope="other"))), 403)
    # A task of a public route: its status is public too.
    opened = client.post("/shop/Jobs/open_celery")
    assert client.get(f"/status/{opened.get_json()['id']}").status_code == 200


def test_pages_auth_puts_the_pages_behind_a_login(jwt_app: t.Callable[..., Flask]) -> None:
    client = jwt_app(PAGES_AUTH=True).test_client()
    for page in ("/_kernkoa/endpoints", "/_kernkoa/info", "/_kernkoa/openapi.json",
                 "/_kernkoa/docs"):
        assert_401(client.get(page), invalid=False)
        assert client.get(page, headers=bearer(token())).status_code == 200, page
    assert client.get("/shop/Open").status_code == 200  # routes stay as AUTH_DEFAULT says
    assert client.get("/_kernkoa/health").status_code == 200
    # Without PAGES_AUTH the pages follow AUTH_DEFAULT.
    assert jwt_app().test_client().get("/_kernkoa/info").status_code == 200


def test_health_stays_public_under_auth_default_required(
    jwt_app: t.Callable[..., Flask]
) -> None:
    client = jwt_app(AUTH_DEFAULT="required").test_client()
    assert client.get("/_kernkoa/health").status_code == 200
    assert_401(client.get("/_kernkoa/info"), invalid=False)


def test_task_status_under_auth_default_required(jwt_app: t.Callable[..., Flask]) -> None:
    client = jwt_app(AUTH_DEFAULT="required").test_client()
    assert_401(client.post("/shop/Jobs/default_celery"), invalid=False)
    started = client.post("/shop/Jobs/default_celery", headers=bearer(token()))
    status = f"/status/{started.get_json()['id']}"
    assert_401(client.get(status), invalid=False)
    assert client.get(status, headers=bearer(token())).status_code == 200
    # An id never issued: 401 for the anonymous, 404 once authenticated.
    unknown = "/status/00000000-0000-4000-8000-000000000000"
    assert_401(client.get(unknown), invalid=False)
    assert_error(client.get(unknown, headers=bearer(token())), 404)


def test_decorators_refuse_contradictions() -> None:
    from kernkoa import public
    from kernkoa import requires

    with pytest.raises(TypeError):
        public(requires("a")(lambda self: None))
    with pytest.raises(TypeError):
        requires("a")(public(lambda self: None))
    with pytest.raises(ValueError):
        requires("two words")
