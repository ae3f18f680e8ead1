"""Where the fleet listens and how it authenticates: addresses the user
gives (never a wildcard), and mutual TLS with the user's certificates."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from ..core.errors import UsageError
from ..core.model import Model

Scheme = Literal["tcp", "tls"]
WILDCARDS = ("", "*", "0.0.0.0", "::", "[::]")


class Tls(Model):
    """One certificate and key (used for every role) and the CA that signed
    the fleet's certificates: each side verifies the other's."""

    ca: Path
    cert: Path
    key: Path

    def security(self) -> Any:
        from distributed.security import Security
        return Security(
            tls_ca_file=str(self.ca), require_encryption=True,
            tls_client_cert=str(self.cert), tls_client_key=str(self.key),
            tls_worker_cert=str(self.cert), tls_worker_key=str(self.key),
            tls_scheduler_cert=str(self.cert), tls_scheduler_key=str(self.key))


def tls_of(ca: Path | None, cert: Path | None, key: Path | None) -> Tls | None:
    """--tls-ca/--tls-cert/--tls-key: all three or none, each readable."""
    given = {"--tls-ca": ca, "--tls-cert": cert, "--tls-key": key}
    if all(p is None for p in given.values()):
        return None
    if absent := [name for name, p in given.items() if p is None]:
        raise UsageError(f"TLS needs --tls-ca, --tls-cert and --tls-key together; "
                         f"{', '.join(absent)} missing")
    for name, path in given.items():
        assert path is not None
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"{name} {path}: not a readable file")
    assert ca is not None and cert is not None and key is not None
    return Tls(ca=ca, cert=cert, key=key)


def _host_port(text: str) -> tuple[str, str]:
    host, sep, port = text.rpartition(":")
    if not sep or host.endswith(":") or (":" in host and not host.startswith("[")):
        return text, ""  # no port, or a bare IPv6 address
    return host, port


def address(text: str, what: str, tls: Tls | None, default_port: int | None) -> str:
    """`HOST[:PORT]` or `tcp://` / `tls://HOST[:PORT]` as a Dask address with
    the scheme TLS calls for (pure). A wildcard host is refused: the user
    names the interface."""
    scheme = "tls" if tls is not None else "tcp"
    rest = text
    if "://" in text:
        given, rest = text.split("://", 1)
        if given not in ("tcp", "tls"):
            raise UsageError(f"{what} {text}: the scheme is tcp:// or tls://, not {given}://")
        if given != scheme:
            raise UsageError(f"{what} {text}: {given}:// "
                             + ("needs --tls-ca/--tls-cert/--tls-key" if given == "tls"
                                else "with --tls-* given; use tls://"))
    host, port = _host_port(rest)
    if host.strip("[]") in WILDCARDS or host in WILDCARDS:
        raise UsageError(f"{what} {text}: give the address of one interface, not a wildcard "
                         "(the fleet listens only where you say)")
    if port:
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise UsageError(f"{what} {text}: port {port!r} is not a number 0-65535")
    elif default_port is None:
        raise UsageError(f"{what} {text}: give a port (HOST:PORT)")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not host.replace("-", "").replace(".", "").isalnum():
            raise UsageError(f"{what} {text}: {host!r} is neither an IP address nor a "
                             "host name") from None
    return f"{scheme}://{host}:{port or default_port}"
