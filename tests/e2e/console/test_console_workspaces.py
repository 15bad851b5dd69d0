"""Membership needs consent, in the browser: A invites B; B sees it, accepts, and has the workspace."""

from __future__ import annotations

from playwright.sync_api import expect


def test_invited_user_accepts_and_the_workspace_appears_in_their_list(make_page, ui):
    alice, bob = ui.user("alice"), ui.user("bob")
    team = ui.unique("Lab ")
    a = make_page()
    ui.login(a, alice)
    a.get_by_test_id("nav-workspaces").click()
    a.get_by_test_id("ws-new-name").fill(team)
    a.get_by_test_id("ws-create").click()
    expect(a.get_by_test_id("ws-selected-name")).to_contain_text(team)
    a.get_by_test_id("ws-invite-who").fill(bob)
    a.get_by_test_id("ws-invite-role").click()
    a.locator(".el-select-dropdown__item:visible", has_text="Viewer").click()
    a.get_by_test_id("ws-invite-send").click()
    pending = a.get_by_test_id("ws-invitations")
    expect(pending).to_contain_text(bob)
    expect(pending).to_contain_text("Viewer")
    expect(a.get_by_test_id("ws-members")).not_to_contain_text(bob)  # not a member before accepting
    ui.shot(a, "workspace-invitation-sent")

    b = make_page()
    ui.login(b, bob)
    b.get_by_test_id("nav-workspaces").click()
    offer = b.get_by_test_id("my-invitation").filter(has_text=team)
    expect(offer).to_contain_text(alice)
    expect(b.locator(".ws-item", has_text=team)).to_have_count(0)  # not in Bob's list before he accepts
    ui.shot(b, "workspace-invitation-received")
    offer.get_by_test_id("invitation-accept").click()
    expect(b.get_by_test_id("my-invitations")).to_have_count(0)
    expect(b.get_by_test_id("ws-selected-name")).to_contain_text(team)
    expect(b.locator(".ws-item", has_text=team)).to_contain_text("Viewer")
    expect(b.get_by_test_id("ws-members")).to_contain_text(bob)
    ui.shot(b, "workspace-invitation-accepted")

    # Alice sees Bob as a member and no pending invitation any more.
    a.reload()
    a.locator(".ws-item", has_text=team).click()
    expect(a.get_by_test_id("ws-members")).to_contain_text(bob)
    expect(a.get_by_test_id("ws-invitations")).to_have_count(0)


def test_declined_and_revoked_invitations_join_nobody(make_page, ui):
    alice, bob = ui.user("alice"), ui.user("bob")
    team = ui.unique("Team ")
    a = make_page()
    ui.login(a, alice)
    a.get_by_test_id("nav-workspaces").click()
    a.get_by_test_id("ws-new-name").fill(team)
    a.get_by_test_id("ws-create").click()
    expect(a.get_by_test_id("ws-selected-name")).to_contain_text(team)
    a.get_by_test_id("ws-invite-who").fill(f"{bob}@example.com")  # by email this time
    a.get_by_test_id("ws-invite-send").click()
    expect(a.get_by_test_id("ws-invitations")).to_contain_text(bob)

    b = make_page()
    ui.login(b, bob)
    b.get_by_test_id("nav-workspaces").click()
    b.get_by_test_id("my-invitation").filter(has_text=team).get_by_test_id("invitation-decline").click()
    expect(b.get_by_test_id("my-invitations")).to_have_count(0)
    expect(b.locator(".ws-item", has_text=team)).to_have_count(0)

    # Invited again, then revoked by Alice before Bob answers: Bob's page no longer offers it.
    a.reload()
    a.locator(".ws-item", has_text=team).click()
    a.get_by_test_id("ws-invite-who").fill(bob)
    a.get_by_test_id("ws-invite-send").click()
    a.get_by_test_id(f"ws-revoke-{bob}").click()
    ui.confirm(a)
    expect(a.get_by_test_id("ws-invitations")).to_have_count(0)
    b.reload()
    expect(b.get_by_test_id("ws-selected-name")).to_be_visible()
    expect(b.get_by_test_id("my-invitations")).to_have_count(0)
    expect(b.locator(".ws-item", has_text=team)).to_have_count(0)
