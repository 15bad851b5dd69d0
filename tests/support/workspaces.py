"""Making someone a workspace member the way users do: invite, then the invitee accepts.

Workspace owners and admins can no longer add members directly (membership needs the
invitee's consent); tests that need a member use these helpers.
"""

from __future__ import annotations

from remotegpu.domain.workspaces.models import Role


async def join_workspace(client, inviter, workspace_id: str, invitee, role: str = "member") -> dict:
    """Over HTTP: ``inviter`` invites ``invitee`` (conftest Accounts) and the invitee accepts; returns the workspace."""
    r = await client.post(
        f"/api/v1/workspaces/{workspace_id}/invitations", json={"username": invitee.username, "role": role},
        headers=inviter.headers,
    )
    assert r.status == 201, await r.text()
    invitation = await r.json()
    r = await client.post(f"/api/v1/users/me/invitations/{invitation['id']}/accept", headers=invitee.headers)
    assert r.status == 200, await r.text()
    return await r.json()


async def join(container, inviter, workspace_id: str, invitee, role: Role = Role.MEMBER) -> None:
    """Through the use cases (``User`` objects): invite, then accept."""
    invitations = container.invitation_service()
    view = await invitations.invite(inviter, workspace_id, role, username=invitee.username)
    await invitations.accept(invitee, view.invitation.id)


def join_workspace_live(server, inviter_token: str, workspace_id: str, username: str, invitee_token: str,
                        role: str = "member") -> dict:
    """Against a live server (``tests.support.live_server``): invite ``username``, who accepts."""
    code, invitation = server.request(
        "POST", f"/api/v1/workspaces/{workspace_id}/invitations", {"username": username, "role": role}, token=inviter_token,
    )
    assert code == 201, invitation
    code, workspace = server.request("POST", f"/api/v1/users/me/invitations/{invitation['id']}/accept", token=invitee_token)
    assert code == 200, workspace
    return workspace
