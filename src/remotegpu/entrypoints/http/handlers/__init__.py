"""HTTP handlers, one module per context. Importing this package registers every route on ``api``."""

from remotegpu.entrypoints.http.routing import Api

api = Api()

from remotegpu.entrypoints.http.handlers import (  # noqa: E402,F401
    account,
    admin,
    agent,
    auth,
    browser_session,
    oidc,
    environments,
    events,
    hosts,
    notifications,
    storage,
    terminal,
    ssh_gateway,
    webhooks,
    workspaces,
    support,
    phones,
    billing,
    monitoring,
    images,
    registry,
    workloads,
    inference,
)
