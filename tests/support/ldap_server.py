"""A real OpenLDAP server (Debian's slapd) for the LDAP sign-in tests.

Each server runs from a throwaway slapd.conf and MDB directory in a temporary folder on
a free loopback port, seeded with people and groups through the LDAP protocol itself,
and is stopped (and its folder removed) at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field

from tests.support.components import missing, wait_listening

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
# A read-only service account the platform binds as to find a user's entry and groups.
SERVICE_DN = f"cn=platform,{SUFFIX}"
SERVICE_PASSWORD = "service-secret"

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{root}"
rootpw {rootpw}
directory {dir}/db
access to attrs=userPassword
    by self =xw
    by anonymous auth
    by * none
access to *
    by dn.exact="{service}" read
    by self read
    by * none
"""


@dataclass
class LdapServer:
    url: str
    folder: str
    process: subprocess.Popen
    people: dict[str, str] = field(default_factory=dict)  # uid -> DN

    def _connection(self):
        import ldap3

        return ldap3.Connection(ldap3.Server(self.url), ROOT_DN, ROOT_PASSWORD, auto_bind=True)

    def add_person(self, uid: str, password: str, *, mail: str | None = None, name: str | None = None) -> str:
        dn = f"uid={uid},{PEOPLE}"
        with self._connection() as c:
            ok = c.add(dn, ["inetOrgPerson"], {
                "uid": uid, "cn": name or uid, "sn": uid, "mail": mail or f"{uid}@example.org", "userPassword": password,
            })
            assert ok, c.result
        self.people[uid] = dn
        return dn

    def add_group(self, cn: str, members: list[str]) -> str:
        dn = f"cn={cn},{GROUPS}"
        with self._connection() as c:
            assert c.add(dn, ["groupOfNames"], {"cn": cn, "member": [self.people[m] for m in members]}), c.result
        return dn

    def set_members(self, cn: str, members: list[str]) -> None:
        import ldap3

        with self._connection() as c:
            # groupOfNames needs one member at least: the service account stands in for none.
            values = [self.people[m] for m in members] or [SERVICE_DN]
            assert c.modify(f"cn={cn},{GROUPS}", {"member": [(ldap3.MODIFY_REPLACE, values)]}), c.result

    def set_password(self, uid: str, password: str) -> None:
        import ldap3

        with self._connection() as c:
            assert c.modify(self.people[uid], {"userPassword": [(ldap3.MODIFY_REPLACE, [password])]}), c.result

    def delete_person(self, uid: str) -> None:
        with self._connection() as c:
            assert c.delete(self.people.pop(uid)), c.result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ldap_server() -> LdapServer:
    slapd = os.environ.get("REMOTEGPU_TEST_SLAPD", "/usr/sbin/slapd")
    if not os.path.exists(slapd):
        missing("slapd is not installed (deploy/ci/services.d/identity.sh)")
    try:
        import ldap3
    except ImportError:
        missing("the ldap3 package is not installed")
    folder = tempfile.mkdtemp(prefix="rgpu-slapd-")
    os.makedirs(f"{folder}/db")
    with open(f"{folder}/slapd.conf", "w") as f:
        f.write(_CONF.format(dir=folder, suffix=SUFFIX, root=ROOT_DN, rootpw=ROOT_PASSWORD, service=SERVICE_DN))
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    # -d 0: stay in the foreground (a child we can stop), logging nothing.
    with open(f"{folder}/slapd.log", "wb") as log:
        process = subprocess.Popen([slapd, "-f", f"{folder}/slapd.conf", "-h", f"{url}/", "-d", "0"],
                                   stdout=subprocess.DEVNULL, stderr=log)
    server = LdapServer(url, folder, process)
    try:
        wait_listening(process, port, "slapd", 20, f"{folder}/slapd.log")
    except RuntimeError:
        server.stop()
        raise
    with server._connection() as c:
        assert c.add(SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example"}), c.result
        for ou in ("people", "groups"):
            assert c.add(f"ou={ou},{SUFFIX}", ["organizationalUnit"], {"ou": ou}), c.result
        assert c.add(SERVICE_DN, ["simpleSecurityObject", "organizationalRole"],
                     {"cn": "platform", "userPassword": SERVICE_PASSWORD}), c.result
    del ldap3
    return server
