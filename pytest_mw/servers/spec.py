"""What a started server looks like to tests, and the small interface every provider implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

Kind = Literal["redis", "postgres"]
ProviderName = Literal["process", "container", "noproc"]


@dataclass(frozen=True)
class ServerSpec:
    """A running server: ``url`` is a ``redis://`` (``rediss://``) URL or ``postgresql://`` DSN any client understands.

    ``admin_url`` is for what the code under test must not be allowed to do (fault injection, cleanup): on a server
    with a least-privilege user (the TLS server) it names an admin user, elsewhere it is ``url``.
    """

    kind: Kind
    url: str
    provider: ProviderName
    detail: str = ""
    admin_url: str = ""

    @property
    def admin(self) -> str:
        return self.admin_url or self.url

    def __repr__(self) -> str:
        from pytest_mw.servers.readiness import mask

        shown = f"{self.kind!r}, {mask(self.url)!r}, {self.provider!r}, {self.detail!r}"
        return f"ServerSpec({shown}{f', admin_url={mask(self.admin_url)!r}' if self.admin_url else ''})"


class Server(Protocol):
    """A provider: ``start`` raises ``ServerUnavailable`` with the reason, ``stop`` undoes whatever ``start`` did."""

    kind: Kind
    provider: ProviderName

    @property
    def label(self) -> str:
        """What will be tried, for the report header (e.g. ``container redis:7``)."""
        ...

    def start(self) -> ServerSpec: ...

    def stop(self) -> None: ...


_S = TypeVar("_S", bound="StartStop")


class StartStop:
    """``with Provider() as spec:``: start on entry, stop on exit, for every provider that mixes this in."""

    def start(self) -> ServerSpec:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
