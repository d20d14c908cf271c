"""The client's address behind the proxies ``TRUSTED_PROXIES`` names.

By default a request's address (``request.remote_addr``, what the failed-login
throttle counts by) is the socket's peer: ``X-Forwarded-For`` is the client's
to write, so it is never read. When the peer is a proxy named in
``TRUSTED_PROXIES`` (addresses or networks), Werkzeug's
:class:`~werkzeug.middleware.proxy_fix.ProxyFix` takes the address from
``X-Forwarded-For`` instead: the entry the nearest proxy added, or, while that
entry names a trusted proxy too (a chain: load balancer, then nginx), the one
before it. An entry the client forged sits left of the first untrusted one,
so it is never reached.

Behind the shipped nginx (``uwsgi_pass`` on the same host) nothing is needed:
nginx hands uWSGI the client's address itself.
"""

from __future__ import annotations

import ipaddress
import typing as t

from flask import Flask
from werkzeug.http import parse_list_header
from werkzeug.middleware.proxy_fix import ProxyFix

from ..core.errors import SettingsError
from ..core.settings import Settings

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(entries: t.Iterable[str]) -> tuple[Network, ...]:
    """The networks of ``TRUSTED_PROXIES`` (a bare address is a network of one).

    :raises SettingsError: for an entry that is neither.
    """
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise SettingsError(f"TRUSTED_PROXIES: {entry!r} is not an address or network "
                                "(e.g. 10.0.0.5, 10.0.0.0/24, ::1)") from None
    return tuple(networks)


class TrustedProxies:
    """WSGI middleware: ``ProxyFix`` for requests whose peer is a trusted proxy."""

    def __init__(self, app: WSGIApplication, networks: t.Sequence[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    def trusted(self, address: str) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def hops(self, environ: WSGIEnvironment) -> int:
        """How many ``X-Forwarded-For`` entries, from the right, trusted proxies
        wrote up to the client's (0: the peer is no trusted proxy)."""
        if not self.trusted(environ.get("REMOTE_ADDR") or ""):
            return 0
        forwarded = parse_list_header(environ.get("HTTP_X_FORWARDED_FOR") or "")
        hops = 1
        while hops < len(forwarded) and self.trusted(forwarded[-hops]):
            hops += 1
        return hops

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> t.Iterable[bytes]:
        """Serve the request, its ``REMOTE_ADDR`` taken from a trusted proxy's header."""
        hops = self.hops(environ)
        if not hops:
            return self.app(environ, start_response)
        # A ProxyFix of the right depth for this request: it only stores its arguments.
        return ProxyFix(self.app, x_for=hops)(environ, start_response)


def install_trusted_proxies(app: Flask, settings: Settings) -> None:
    """Wrap ``app``'s WSGI callable when ``TRUSTED_PROXIES`` names any proxy.

    :raises SettingsError: for an entry that is not an address or network.
    """
    networks = parse_proxies(settings.TRUSTED_PROXIES)
    if networks:
        app.wsgi_app = TrustedProxies(app.wsgi_app, networks)  # type: ignore[method-assign]
