"""Whether a listening address is reachable only from this machine (serve and pacs are safe
by default there, and ask for credentials elsewhere)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False
