from datetime import datetime, timezone

import pytest

from remotegpu.domain.shared.errors import Conflict, PermissionDenied
from remotegpu.domain.workspaces.models import Membership, Role, check_can_assign, check_keeps_an_owner

NOW = datetime.now(timezone.utc)


def members(*roles):
    return [Membership("w", f"u{i}", r, NOW) for i, r in enumerate(roles)]


def test_last_owner_cannot_be_demoted_or_leave():
    ms = members(Role.OWNER, Role.ADMIN)
    with pytest.raises(Conflict):
        check_keeps_an_owner(ms, "u0", Role.ADMIN)
    with pytest.raises(Conflict):
        check_keeps_an_owner(ms, "u0", None)


def test_an_owner_can_step_down_when_another_owner_exists():
    check_keeps_an_owner(members(Role.OWNER, Role.OWNER), "u0", Role.MEMBER)


@pytest.mark.parametrize("actor", [Role.VIEWER, Role.MEMBER])
def test_only_admins_and_owners_manage_members(actor):
    with pytest.raises(PermissionDenied):
        check_can_assign(actor, None, Role.VIEWER)


def test_admins_manage_members_but_not_privileged_roles():
    check_can_assign(Role.ADMIN, Role.VIEWER, Role.MEMBER)
    with pytest.raises(PermissionDenied):
        check_can_assign(Role.ADMIN, None, Role.ADMIN)
    with pytest.raises(PermissionDenied):
        check_can_assign(Role.ADMIN, Role.OWNER, Role.MEMBER)
    check_can_assign(Role.OWNER, Role.MEMBER, Role.OWNER)
