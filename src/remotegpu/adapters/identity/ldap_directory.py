"""LDAP / Active Directory sign-in with ``ldap3``.

Two binds per sign-in, the usual pattern: a service account (or an anonymous bind)
finds the person's entry by the configured filter, then a bind as that entry with the
password typed proves it. The groups come from a search for groups naming the entry
as a member (``groupOfNames``/AD ``group``: ``member``; set the filter for
``posixGroup``'s ``memberUid``). The typed name is escaped into the filter, so it
cannot widen the search (``*``, parentheses). Blocking calls run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from remotegpu.application.identity.ports import DirectoryEntry
from remotegpu.domain.shared.errors import Unavailable

log = logging.getLogger("remotegpu.identity.ldap")


@dataclass(frozen=True)
class LdapSettings:
    url: str  # ldap://host:389 or ldaps://host:636
    user_base: str
    user_filter: str = "(uid={login})"  # AD: (sAMAccountName={login})
    bind_dn: str | None = None  # the service account; None: anonymous search
    bind_password: str | None = None
    group_base: str | None = None  # None: groups are not read
    group_filter: str = "(member={dn})"  # posixGroup: (memberUid={login})
    username_attribute: str = "uid"
    email_attribute: str = "mail"
    name_attribute: str = "cn"
    start_tls: bool = False
    timeout_seconds: int = 5


class LdapDirectory:
    def __init__(self, settings: LdapSettings):
        self._s = settings
        self._server = ldap3.Server(settings.url, connect_timeout=max(1, int(settings.timeout_seconds)), get_info=ldap3.NONE)

    async def authenticate(self, username: str, password: str) -> DirectoryEntry | None:
        if not username or not password:  # an empty password is an anonymous bind: never a sign-in
            return None
        try:
            return await asyncio.to_thread(self._authenticate, username, password)
        except LDAPException as exc:
            log.warning("LDAP directory unreachable or failing: %s", type(exc).__name__)
            raise Unavailable("the sign-in directory cannot be reached; try again later", code="directory_unavailable") from exc

    def _connection(self, user: str | None, password: str | None) -> ldap3.Connection:
        conn = ldap3.Connection(self._server, user=user, password=password, receive_timeout=max(1, int(self._s.timeout_seconds)),
                                raise_exceptions=False, read_only=True)
        conn.open()
        if self._s.start_tls:
            conn.start_tls()
        return conn

    def _authenticate(self, login: str, password: str) -> DirectoryEntry | None:
        s = self._s
        attrs = [s.username_attribute, s.email_attribute, s.name_attribute]
        search = self._connection(s.bind_dn, s.bind_password)
        try:
            if not search.bind():
                raise LDAPException(f"service bind failed: {search.result.get('description')}")
            query = s.user_filter.replace("{login}", escape_filter_chars(login))
            search.search(s.user_base, query, ldap3.SUBTREE, attributes=attrs, size_limit=2)
            found = [e for e in search.response or [] if e.get("type") == "searchResEntry"]
            if len(found) != 1:  # none, or a filter that matches several people: no sign-in
                return None
            dn, values = found[0]["dn"], found[0]["attributes"]
            person = self._connection(dn, password)
            try:
                if not person.bind():
                    return None
            finally:
                person.unbind()
            groups: set[str] = set()
            if s.group_base:
                query = s.group_filter.replace("{dn}", escape_filter_chars(dn)).replace("{login}", escape_filter_chars(login))
                search.search(s.group_base, query, ldap3.SUBTREE, attributes=["cn"])
                for group in search.response or []:
                    if group.get("type") == "searchResEntry":
                        groups.update(_values(group["attributes"].get("cn")))
            return DirectoryEntry(
                external_id=dn,
                username=_first(values.get(s.username_attribute)) or login,
                email=_first(values.get(s.email_attribute)) or "",
                display_name=_first(values.get(s.name_attribute)) or "",
                groups=frozenset(groups),
            )
        finally:
            search.unbind()


def _values(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _first(value) -> str | None:
    values = _values(value)
    return values[0] if values else None
