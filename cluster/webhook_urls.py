"""Which URLs a webhook may be sent to: https, resolving only to public addresses.

Checked when an endpoint is created or changed, and again before every attempt on the
addresses the name resolves to then; the attempt connects to the address that was checked
(``serve_app.webhook_delivery``), so a name that later resolves to 10.0.0.1 or
169.254.169.254 (DNS rebinding) is refused rather than reached.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from schemas.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeWebhookUrl(ValueError):
    pass


def parse(url: str, settings: Settings) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL; UnsafeWebhookUrl says why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UnsafeWebhookUrl(f"not a valid URL: {e}") from None
    allowed = ("https", "http") if settings.webhook_allow_http else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeWebhookUrl("webhook URLs must use https://" if not settings.webhook_allow_http else "webhook URLs must use http:// or https://")
    if not parts.hostname:
        raise UnsafeWebhookUrl("the URL names no host")
    if parts.username or parts.password:
        raise UnsafeWebhookUrl("the URL must not carry credentials; put a token in its path or query instead")
    if parts.fragment:
        raise UnsafeWebhookUrl("the URL must not have a #fragment")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def address_allowed(address: IPAddress, settings: Settings) -> bool:
    """Public addresses, plus the networks the operator allowed (``webhook_allowed_networks``)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in ipaddress.ip_network(n) for n in settings.webhook_allowed_networks):
        return True
    return address.is_global and not address.is_multicast


def check_addresses(host: str, addresses: list[str], settings: Settings) -> IPAddress:
    """The first resolved address when every one is allowed (a name with one private address is refused)."""
    if not addresses:
        raise UnsafeWebhookUrl(f"{host} does not resolve")
    parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    refused = [str(a) for a in parsed if not address_allowed(a, settings)]
    if refused:
        raise UnsafeWebhookUrl(f"{host} resolves to {', '.join(refused)}: private, loopback and link-local addresses are not allowed")
    return parsed[0]


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_url(url: str, settings: Settings) -> None:
    """Raise UnsafeWebhookUrl unless ``url`` may receive webhooks now (resolves the name)."""
    _, host, port = parse(url, settings)
    check_addresses(host, resolve(host, port), settings)
