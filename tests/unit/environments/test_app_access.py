"""App-host credentials: bound to one user, one environment's app, one host, a short life."""

from __future__ import annotations

from remotegpu.application.environments.app_access import (
    APP,
    APP_CREDENTIAL_SECONDS,
    TICKET,
    TICKET_SECONDS,
    AppAddress,
    AppCredentials,
    safe_next,
)

ENV_A = "0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c"
ENV_B = "1c9f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c"
HOST_A = f"{ENV_A}--jupyter.apps.example.com"
HOST_B = f"{ENV_B}--jupyter.apps.example.com"


def test_host_labels_name_one_app_of_one_environment():
    assert AppAddress.parse(f"{ENV_A}--jupyter") == AppAddress(ENV_A, "jupyter")
    assert AppAddress.parse(f"{ENV_A.upper()}--JUPYTER") == AppAddress(ENV_A, "jupyter")
    for label in ("jupyter", f"{ENV_A}--nope", f"{ENV_A}-jupyter", "x--jupyter", f"{ENV_A}--jupyter--jupyter", ""):
        assert AppAddress.parse(label) is None, label
    assert AppAddress(ENV_A, "jupyter").host("apps.example.com") == HOST_A


def test_a_credential_verifies_only_for_its_kind_host_and_life():
    creds = AppCredentials("secret")
    token, grant = creds.issue(APP, "u1", AppAddress(ENV_A, "jupyter"), HOST_A, now=1000)
    assert creds.verify(token, kind=APP, host=HOST_A, now=1000 + APP_CREDENTIAL_SECONDS - 1) == grant
    assert creds.verify(token, kind=APP, host=HOST_A.upper(), now=1001) == grant  # host names are case-blind
    assert creds.verify(token, kind=APP, host=HOST_A, now=1000 + APP_CREDENTIAL_SECONDS) is None  # expired
    assert creds.verify(token, kind=APP, host=HOST_B, now=1001) is None  # another environment's host
    assert creds.verify(token, kind=TICKET, host=HOST_A, now=1001) is None  # not a ticket
    assert AppCredentials("other secret").verify(token, kind=APP, host=HOST_A, now=1001) is None
    payload, _, signature = token.partition(".")
    assert creds.verify(payload + "." + signature[::-1], kind=APP, host=HOST_A, now=1001) is None
    assert creds.verify("garbage", kind=APP, host=HOST_A, now=1001) is None


def test_a_credential_for_one_host_cannot_be_relabelled_for_another():
    creds = AppCredentials("secret")
    # Issued (wrongly) for host B but claiming environment A: the host's own label must agree.
    token, _ = creds.issue(APP, "u1", AppAddress(ENV_A, "jupyter"), HOST_B, now=1000)
    assert creds.verify(token, kind=APP, host=HOST_B, now=1001) is None


def test_tickets_live_seconds_and_carry_a_nonce_to_spend_them_once():
    creds = AppCredentials("secret")
    token, grant = creds.issue(TICKET, "u1", AppAddress(ENV_A, "jupyter"), HOST_A, now=1000)
    assert creds.verify(token, kind=TICKET, host=HOST_A, now=1000 + TICKET_SECONDS) is None
    assert creds.verify(token, kind=TICKET, host=HOST_A, now=1000 + TICKET_SECONDS - 1) == grant
    _, other = creds.issue(TICKET, "u1", AppAddress(ENV_A, "jupyter"), HOST_A, now=1000)
    assert grant.consumption_key != other.consumption_key


def test_after_the_handshake_the_browser_stays_on_the_app_host():
    assert safe_next("/lab/tree/x.ipynb?reset") == "/lab/tree/x.ipynb?reset"
    for bad in ("//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)", "", None, "/a\nb"):
        assert safe_next(bad) == "/", bad


def test_the_password_tag_follows_the_password_hash_and_survives_renewal():
    creds = AppCredentials("secret")
    tag = creds.password_tag("$argon2id$v=19$m=65536,t=3,p=4$old")
    assert tag == creds.password_tag("$argon2id$v=19$m=65536,t=3,p=4$old") != creds.password_tag("$argon2id$new")
    assert "argon2" not in tag and AppCredentials("other").password_tag("$argon2id$new") != creds.password_tag("$argon2id$new")
    token, grant = creds.issue(APP, "u1", AppAddress(ENV_A, "jupyter"), HOST_A, now=1000, password_tag=tag)
    assert creds.verify(token, kind=APP, host=HOST_A, now=1001).password_tag == tag
