"""A webhook over HTTP: the check that a URL leads to a public address, and one POST to the address checked,
bounded in time however slowly the receiver answers. What is sent, when and how often is contexts/services/webhooks.py.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import threading
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import urllib3
import urllib3.connection
from django.conf import settings

from ..exceptions import ApplicationError

# What a POST raises when the receiver is unreachable, slow, or speaks bad HTTP (timeouts, refused connections,
# TLS and protocol errors): the receiver may be back later.
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
# IPv6 ranges Python's is_global counts as public (3.11) that are not: NAT64's local-use prefix (RFC 8215, to a
# network's own IPv4 addresses), site-local (deprecated, still routed inside some networks), SIIT's
# IPv4-translated addresses (RFC 2765) and IPv4-compatible ones (deprecated): each may lead to a private host.
NOT_PUBLIC_V6 = tuple(ipaddress.ip_network(net) for net in ("64:ff9b:1::/48", "fec0::/10", "::ffff:0:0:0/96",
                                                            "::/96"))


class WebhookUrlRefused(ApplicationError):
    code = "webhook_url_refused"
    status = 400


class WebhookHostUnresolved(WebhookUrlRefused):
    """The host did not resolve: refused at registration, but at send time DNS may answer again later."""


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: the address checked just now, so DNS cannot change between check and connect."""

    scheme: str
    host: str
    port: int
    address: str
    path: str


def webhook_url_check(url: str) -> Target:
    """Refuse a URL that is not http(s) or whose host resolves to a private, loopback, link-local, reserved or
    multicast address (unless SESSIONCTX_WEBHOOK_ALLOW_PRIVATE); return the address to connect to."""
    try:
        parts = urlsplit(url)
        port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise WebhookUrlRefused(f"Not a valid URL: {exc}.") from None
    if port == 0:  # no service listens there; it was sent to the scheme's port instead
        raise WebhookUrlRefused("Not a valid URL: port 0 is no port to send to.")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlRefused("A webhook URL must start with http:// or https:// and name a host.")
    try:
        # An international name ("例え.jp") in its ASCII form, as DNS, the Host header and TLS (SNI) take it.
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise WebhookUrlRefused(f"The host {parts.hostname} is not a valid host name: {exc}.") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookHostUnresolved(f"The host {parts.hostname} does not resolve: {exc}.") from None
    addresses = [info[4][0] for info in infos]
    if not settings.SESSIONCTX_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            ip = getattr(ip, "ipv4_mapped", None) or ip
            through = _translated_ipv4(ip)
            not_public_v6 = ip.version == 6 and any(ip in net for net in NOT_PUBLIC_V6)
            if (not ip.is_global or ip.is_multicast or not_public_v6
                    or (through is not None and not through.is_global)):
                raise WebhookUrlRefused(
                    f"The host {parts.hostname} resolves to {ip}, a private, loopback, link-local or reserved "
                    "address: webhooks are only sent to public addresses.",
                    details={"address": str(ip)})
    # A path or query beyond ASCII (an IRI, which the URL field accepts) goes out percent-encoded in UTF-8, as a
    # browser sends it: http.client takes ASCII only. What is already encoded stays as it is.
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=")
    if parts.query:
        path += "?" + quote(parts.query, safe="/?%:@!$&'()*+,;=")
    return Target(scheme=parts.scheme, host=host, port=port, address=addresses[0], path=path)


def _translated_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through a translator (NAT64's well-known prefix, 6to4), if any:
    Python counts those prefixes as public whatever they lead to, and a network with NAT64 connects to it."""
    if ip.version != 6:
        return None
    if ip in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def post(target: Target, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
    """POST to the checked address, naming the host in Host and (for TLS) in SNI and the certificate check; the
    status, and the seconds a Retry-After asks for (0 without one)."""
    seconds = settings.SESSIONCTX_WEBHOOK_TIMEOUT
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host and target.port == default_port:
        host_header = f"[{target.host}]"
    elif ":" in target.host:
        host_header = f"[{target.host}]:{target.port}"
    if target.scheme == "https":
        conn = urllib3.connection.HTTPSConnection(target.address, target.port, timeout=seconds,
                                                  server_hostname=target.host, assert_hostname=target.host)
    else:
        conn = urllib3.connection.HTTPConnection(target.address, target.port, timeout=seconds)
    # The timeout bounds each read, so a receiver that sends its answer a byte at a time would hold the attempt and
    # its worker as long as it liked, past the lease that keeps a second attempt out (_claim): after a connect and
    # a read's worth the socket is shut, which ends any read under way.
    cut = threading.Event()
    watchdog = threading.Timer(2 * seconds, _cut_off, args=(conn, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        try:
            # The answer's body is never read: only its status and Retry-After count.
            conn.request("POST", target.path, body=body, headers={**headers, "host": host_header},
                         preload_content=False)
            response = conn.getresponse()
        finally:
            watchdog.cancel()
        # Cut off mid-answer, http.client takes the end of the stream for the end of the headers.
        if cut.is_set():
            raise TimeoutError(f"timed out: no whole answer within {2 * seconds:g} s")
        retry_after = response.headers.get("retry-after", "")
        # Seconds only (an HTTP date is rare from webhook receivers), and never past the schedule's day.
        wait = retry_after.strip()
        return response.status, min(float(wait), 86400.0) if re.fullmatch(r"[0-9]{1,9}", wait) else 0.0
    except (OSError, http.client.HTTPException):
        if cut.is_set():
            raise TimeoutError(f"timed out: no whole answer within {2 * seconds:g} s") from None
        raise
    finally:
        conn.close()


def _cut_off(conn: urllib3.connection.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    if conn.sock is not None:
        with contextlib.suppress(OSError):  # already closed
            conn.sock.shutdown(socket.SHUT_RDWR)
