"""Composition root: picks adapters from configuration and wires the use cases.

``persistence``: ``sql`` (SQLite or PostgreSQL by URL) or ``memory`` (tests).
``queue`` and ``ratelimit``: ``inline``/``memory`` in embedded mode, ``dramatiq``/``redis``
when REMOTEGPU_REDIS_URL is set.
"""

from __future__ import annotations

from datetime import timedelta

from dependency_injector import containers, providers

from remotegpu.adapters.access.direct_ssh import DirectSshGateway
from remotegpu.adapters.access.ssh_keys import Ed25519KeyPairs
from remotegpu.adapters.cache.user_cache import LocalUserCache, RedisBroadcastUserCache
from remotegpu.adapters.memory.store import InMemoryStore
from remotegpu.adapters.memory.uow import InMemoryUnitOfWork
from remotegpu.adapters.events import LocalChangeFeed, RedisChangeFeed
from remotegpu.application.shared.change_feed import ChangeTrackingUnitOfWork
from remotegpu.adapters.notifications.memory import InMemoryNotificationRepository
from remotegpu.adapters.notifications.signals import LocalUnreadSignals
from remotegpu.application.notifications.delivery import DeliveryService
from remotegpu.application.notifications.dispatch import DELIVER_TASK, Dispatcher, NotifyingUnitOfWork
from remotegpu.application.notifications.service import NotificationService
from remotegpu.adapters.ratelimit.memory import InMemoryRateLimiter
from remotegpu.adapters.ratelimit.redis_limiter import RedisRateLimiter
from remotegpu.adapters.security.jwt_tokens import JwtAccessTokenIssuer
from remotegpu.adapters.security.passwords import Argon2PasswordHasher
from remotegpu.adapters.security.sealer import AesGcmSealer
from remotegpu.adapters.tasks.dramatiq_queue import DramatiqTaskQueue, make_broker
from remotegpu.adapters.tasks.inline import InlineTaskQueue
from remotegpu.application.identity.account import AccountService
from remotegpu.application.identity.admin import AdminService
from remotegpu.application.identity.auth import AuthService, AuthSettings
from remotegpu.application.identity.maintenance import Maintenance
from remotegpu.application.shared.clock import SystemClock
from remotegpu.application.environments.autostop import AutoStop
from remotegpu.application.environments.credentials import EnvironmentCredentials
from remotegpu.application.environments.entry import EnvironmentEntry
from remotegpu.application.environments.queue_pass import QueuePass, QueueingUnitOfWork
from remotegpu.adapters.workloads.file_logs import FileJobLogStore, InMemoryJobLogStore
from remotegpu.application.workloads.heartbeat import JobHeartbeat
from remotegpu.application.workloads.queue_pass import ChainedQueuePass, JobQueuePass
from remotegpu.application.workloads.service import TrainingJobService
from remotegpu.application.workloads.services import InferenceServiceService, ServiceNodes
from remotegpu.application.environments.service import EnvironmentService
from remotegpu.application.environments.watch import EnvironmentWatch
from remotegpu.application.fleet.agent_service import AgentService
from remotegpu.application.fleet.hosts import HostService
from remotegpu.application.workspaces.invitations import InvitationService
from remotegpu.adapters.webhooks.memory_store import InMemoryWebhookStore
from remotegpu.adapters.webhooks.sender import AiohttpWebhookSender
from remotegpu.application.webhooks.environment_events import EnvironmentEventsUnitOfWork
from remotegpu.application.webhooks.service import WebhookService
from remotegpu.domain.webhooks.addresses import AddressPolicy, parse_cidrs
from remotegpu.entrypoints.workspace_policy import workspace_policy_from
from remotegpu.application.workspaces.service import WorkspaceService
from remotegpu.domain.environments.images import ImagePolicy, parse_patterns
from remotegpu.entrypoints.config import Settings
from remotegpu.entrypoints.data_dir import secure_data_dir, sqlite_file_of
from remotegpu.entrypoints.readiness import AlwaysReady, SqlReadiness


def _sql_engine(url: str):
    from remotegpu.adapters.db.engine import create_engine

    return create_engine(url)


def _session_factory(engine):
    from sqlalchemy.ext.asyncio import async_sessionmaker

    return async_sessionmaker(engine, expire_on_commit=False)


def _read_session_factory(engine):
    """Sessions of read-only use cases (the hot GETs). On PostgreSQL without BEGIN and
    ROLLBACK — two of a list's six round trips; under READ COMMITTED every statement
    reads its own snapshot anyway. SQLite's driver begins no transaction for a SELECT."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return async_sessionmaker(engine, expire_on_commit=False)


def _sql_uow(session_factory):
    from remotegpu.adapters.db.uow import SqlUnitOfWork

    return SqlUnitOfWork(session_factory)


def _sql_webhook_store(session_factory, sealer):
    from remotegpu.adapters.webhooks.sql_store import SqlWebhookStore

    return SqlWebhookStore(session_factory, sealer)


def _redis(url: str):
    from redis.asyncio import Redis

    return Redis.from_url(url)


def _task_handlers(maintenance: Maintenance, deliveries=None, jobs=None, settings=None) -> dict:
    """Background tasks by name; the Dramatiq worker registers actors of the same names.

    Every one runs periodically without arguments too (the maintenance loop):
    ``notifications.deliver`` then has nothing to do. ``deliveries`` is a provider,
    resolved when a task runs (its service needs the task queue built from this).
    """

    async def deliver(delivery_id: str | None = None) -> None:
        if delivery_id is not None and deliveries is not None:
            await deliveries().deliver(delivery_id)

    async def purge_job_logs() -> None:
        if jobs is not None and settings is not None:
            await jobs().purge_old_logs(settings.job_log_retention_days)

    async def send_due() -> None:
        if deliveries is not None:
            await deliveries().send_due()

    return {
        "identity.purge_expired_refresh_tokens": lambda: maintenance.purge_expired_refresh_tokens(),
        "identity.purge_old_audit_events": lambda: maintenance.purge_old_audit_events(),
        DELIVER_TASK: deliver,
        "notifications.send_due": send_due,
        "workloads.purge_job_logs": purge_job_logs,
    }


def _sql_notifications(session_factory):
    from remotegpu.adapters.db.repositories.notifications import SqlNotificationRepository

    return SqlNotificationRepository(session_factory)


def _email_sender(settings: Settings):
    """The SMTP sender, or None when no SMTP host is configured (email channel off)."""
    if not settings.smtp_host:
        return None
    from remotegpu.adapters.notifications.smtp import SmtpEmailSender, SmtpSettings

    return SmtpEmailSender(SmtpSettings(
        host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from, username=settings.smtp_username,
        password=settings.smtp_password, security=settings.smtp_security, timeout=settings.smtp_timeout_seconds,
    ))


class _LateQueue:
    """The task queue, looked up when first used: it is built from the task handlers,
    which reach the unit of work that the dispatcher (its user) is part of."""

    def __init__(self, container):
        self._container = container

    async def enqueue(self, task: str, **kwargs) -> None:
        await self._container.task_queue().enqueue(task, **kwargs)


_HASH_PROFILES = {"default": {}, "fast": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}}


class Container(containers.DeclarativeContainer):
    config = providers.Configuration()
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)

    # --- persistence ---------------------------------------------------------------
    engine = providers.Singleton(_sql_engine, config.database_url)
    session_factory = providers.Singleton(_session_factory, engine)
    memory_store = providers.Singleton(InMemoryStore)
    storage_uow = providers.Selector(
        config.persistence,
        sql=providers.Factory(_sql_uow, session_factory),
        memory=providers.Factory(InMemoryUnitOfWork, memory_store),
    )
    # Units of work that only read (see _read_session_factory); nothing they load is saved.
    read_uow = providers.Selector(
        config.persistence,
        sql=providers.Factory(_sql_uow, providers.Singleton(_read_session_factory, engine)),
        memory=providers.Factory(InMemoryUnitOfWork, memory_store),
    )
    readiness = providers.Selector(
        config.persistence,
        sql=providers.Singleton(SqlReadiness, engine),
        memory=providers.Singleton(AlwaysReady),
    )

    # --- security ------------------------------------------------------------------
    hasher = providers.Singleton(
        lambda profile, workers: Argon2PasswordHasher(**_HASH_PROFILES[profile], workers=workers),
        config.password_hash_profile, config.password_hash_workers,
    )
    token_issuer = providers.Singleton(JwtAccessTokenIssuer, config.secret_key, config.access_token_ttl_seconds)
    redis = providers.Singleton(_redis, config.redis_url)
    rate_limiter = providers.Selector(
        config.ratelimit,
        memory=providers.Singleton(InMemoryRateLimiter),
        redis=providers.Singleton(lambda r, ns: RedisRateLimiter(r, prefix=f"{ns}:rl:"), redis, config.redis_namespace),
    )

    user_cache = providers.Selector(
        config.ratelimit,
        memory=providers.Singleton(LocalUserCache),
        redis=providers.Singleton(lambda r, ns: RedisBroadcastUserCache(r, channel=f"{ns}:user-invalidations"), redis, config.redis_namespace),
    )

    # Environment changes reach agents and browsers as they are committed.
    change_feed = providers.Selector(
        config.ratelimit,
        memory=providers.Singleton(LocalChangeFeed),
        redis=providers.Singleton(lambda r, ns: RedisChangeFeed(r, channel=f"{ns}:environment-changes"), redis, config.redis_namespace),
    )
    # Secrets the server keeps and uses but never shows (SSH private keys, secret variables, webhook secrets).
    sealer = providers.Singleton(AesGcmSealer, config.secret_key)
    # --- webhooks (their use cases authorize with the plain unit of work: no cycle) ---
    webhook_store = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_webhook_store, session_factory, sealer),
        memory=providers.Singleton(InMemoryWebhookStore),
    )
    webhook_addresses = providers.Singleton(lambda cidrs: AddressPolicy(parse_cidrs(cidrs or "")), config.webhook_allow_cidrs)
    webhook_sender = providers.Singleton(AiohttpWebhookSender, webhook_addresses)
    webhook_service = providers.Singleton(
        WebhookService, uow=storage_uow.provider, store=webhook_store, sender=webhook_sender, clock=clock, addresses=webhook_addresses,
    )
    # Environment lifecycle transitions become webhook events after their commit.
    events_uow = providers.Factory(EnvironmentEventsUnitOfWork, storage_uow, providers.Factory(lambda s: s.publish, webhook_service))
    # Notifications (application/notifications): committed environment and audit events
    # become in-app messages and emails (NotifyingUnitOfWork wraps every use case's uow).
    __self__ = providers.Self()
    notification_repo = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_notifications, session_factory),
        memory=providers.Singleton(InMemoryNotificationRepository),
    )
    unread_signals = providers.Singleton(LocalUnreadSignals)
    email_sender = providers.Singleton(_email_sender, settings)
    email_enabled = providers.Callable(lambda s: bool(s.smtp_host), settings)
    late_task_queue = providers.Singleton(_LateQueue, __self__)
    plain_uow = providers.Factory(ChangeTrackingUnitOfWork, events_uow, change_feed)
    notification_dispatcher = providers.Singleton(
        Dispatcher, uow=plain_uow.provider, repo=notification_repo, clock=clock, queue=late_task_queue,
        signals=unread_signals, email_enabled=email_enabled,
    )
    # Every scheduling transaction ends with a queue pass: the queue moves whenever capacity frees.
    workspace_policy = providers.Singleton(workspace_policy_from, settings)
    # Environments' queue first, then training jobs' (application/workloads/queue_pass.py).
    queueing_uow = providers.Factory(QueueingUnitOfWork, plain_uow, providers.Singleton(
        ChainedQueuePass, providers.Singleton(QueuePass, clock=clock, quotas=workspace_policy),
        providers.Singleton(JobQueuePass, clock=clock, quotas=workspace_policy),
    ))
    uow = providers.Factory(NotifyingUnitOfWork, queueing_uow, notification_dispatcher)
    notification_service = providers.Singleton(
        NotificationService, repo=notification_repo, clock=clock, signals=unread_signals, email_enabled=email_enabled,
    )
    delivery_service = providers.Singleton(
        DeliveryService, uow=plain_uow.provider, repo=notification_repo, clock=clock, sender=email_sender,
        queue=late_task_queue, public_url=providers.Callable(lambda s: s.public_url, settings),
    )

    # Training jobs' logs (application/workloads): files in the data dir for now.
    job_logs = providers.Selector(
        config.persistence,
        sql=providers.Singleton(lambda s: FileJobLogStore(s.data_dir / "job-logs"), settings),
        memory=providers.Singleton(InMemoryJobLogStore),
    )

    # --- use cases -----------------------------------------------------------------
    auth_settings = providers.Singleton(
        AuthSettings,
        registration_policy=config.registration_policy,
        refresh_ttl=providers.Factory(timedelta, days=config.refresh_token_ttl_days),
        login_limit_per_account=config.login_limit_per_account,
        login_limit_per_ip=config.login_limit_per_ip,
        login_window_seconds=config.login_window_seconds,
        login_limit_per_account_all_ips=config.login_limit_per_account_all_ips,
        register_limit_per_ip=config.register_limit_per_ip,
        register_window_seconds=config.register_window_seconds,
    )
    auth_service = providers.Singleton(
        AuthService, uow=uow.provider, clock=clock, hasher=hasher, issuer=token_issuer,
        limiter=rate_limiter, users=user_cache, settings=auth_settings,
    )
    account_service = providers.Singleton(
        AccountService, uow=uow.provider, clock=clock, hasher=hasher, users=user_cache, limiter=rate_limiter
    )
    admin_service = providers.Singleton(AdminService, uow=uow.provider, clock=clock, hasher=hasher, users=user_cache)
    workspace_service = providers.Singleton(
        WorkspaceService, uow=uow.provider, clock=clock, policy=workspace_policy, reads=read_uow.provider
    )
    invitation_service = providers.Singleton(InvitationService, uow=uow.provider, clock=clock, policy=workspace_policy)
    maintenance = providers.Singleton(
        Maintenance, uow=uow.provider, clock=clock,
        audit_retention=providers.Factory(timedelta, days=config.audit_retention_days),
    )

    image_policy = providers.Singleton(
        lambda patterns, base: ImagePolicy(parse_patterns(patterns or ""), default_image=base), config.allowed_images, config.base_image,
    )
    # Per-environment SSH keys, their private halves sealed under the server's secret.
    environment_credentials = providers.Singleton(
        EnvironmentCredentials, keys=providers.Singleton(Ed25519KeyPairs), sealer=sealer,
    )
    environment_service = providers.Singleton(
        EnvironmentService, uow=uow.provider, clock=clock, default_image=config.base_image, credentials=environment_credentials,
        quotas=workspace_policy, images=image_policy, secrets=sealer, reads=read_uow.provider,
    )
    host_service = providers.Singleton(HostService, uow=uow.provider, clock=clock, environments=environment_service)
    access_gateway = providers.Singleton(DirectSshGateway)
    agent_service = providers.Singleton(
        AgentService, uow=uow.provider, clock=clock, environments=environment_service, heartbeat_seconds=config.heartbeat_seconds,
        gateway=access_gateway, feed=change_feed,
        allow_loopback=config.allow_loopback_agents, stranded_after_seconds=config.stranded_after_seconds,
        jobs=providers.Singleton(JobHeartbeat, clock, job_logs, services=providers.Singleton(ServiceNodes, clock)),
    )
    autostop = providers.Singleton(AutoStop, uow=uow.provider, clock=clock, environments=environment_service)
    environment_watch = providers.Singleton(EnvironmentWatch, uow=uow.provider, environments=environment_service, feed=change_feed)
    environment_entry = providers.Singleton(
        EnvironmentEntry, uow=uow.provider, autostop=autostop, gateway=access_gateway, credentials=environment_credentials,
    )

    # --- workloads (training jobs) ----------------------------------------------------
    training_job_service = providers.Singleton(
        TrainingJobService, uow=uow.provider, clock=clock, logs=job_logs, default_image=config.base_image,
        images=image_policy, quotas=workspace_policy, notify=providers.Callable(lambda a: a.poke, agent_service),
    )
    inference_service_service = providers.Singleton(
        InferenceServiceService, uow=uow.provider, clock=clock, default_image=config.base_image, images=image_policy,
    )

    # --- background work -----------------------------------------------------------
    task_handlers = providers.Singleton(_task_handlers, maintenance, delivery_service.provider, training_job_service.provider, settings)
    task_queue = providers.Selector(
        config.queue,
        inline=providers.Singleton(InlineTaskQueue, task_handlers),
        dramatiq=providers.Singleton(
            DramatiqTaskQueue, providers.Singleton(make_broker, config.redis_url, config.redis_namespace)
        ),
    )


def build_container(settings: Settings, *, persistence: str = "sql") -> Container:
    sqlite_file = sqlite_file_of(settings.effective_database_url) if persistence == "sql" else None
    secure_data_dir(settings.data_dir, create=sqlite_file is not None, sqlite_file=sqlite_file)  # 0700 / 0600, every start
    container = Container(settings=settings)
    container.config.from_dict(
        {
            "persistence": persistence,
            "database_url": settings.effective_database_url,
            "redis_url": settings.redis_url,
            "redis_namespace": settings.redis_namespace,
            "ratelimit": "redis" if settings.redis_url else "memory",
            "queue": "dramatiq" if settings.redis_url else "inline",
            "secret_key": settings.effective_secret_key(),
            "access_token_ttl_seconds": settings.access_token_ttl_seconds,
            "refresh_token_ttl_days": settings.refresh_token_ttl_days,
            "registration_policy": settings.registration_policy,
            "login_limit_per_account": settings.login_limit_per_account,
            "login_limit_per_ip": settings.login_limit_per_ip,
            "login_window_seconds": settings.login_window_seconds,
            "audit_retention_days": settings.audit_retention_days,
            "password_hash_profile": settings.password_hash_profile,
            "password_hash_workers": settings.password_hash_workers,
            "login_limit_per_account_all_ips": settings.login_limit_per_account_all_ips,
            "register_limit_per_ip": settings.register_limit_per_ip,
            "register_window_seconds": settings.register_window_seconds,
            "base_image": settings.base_image,
            "allowed_images": settings.allowed_images,
            "metrics_token": settings.metrics_token,
            "heartbeat_seconds": settings.heartbeat_seconds,
            "allow_loopback_agents": settings.allow_loopback_agents,
            "stranded_after_seconds": settings.stranded_after_seconds,
            "webhook_allow_cidrs": settings.webhook_allow_cidrs,
        }
    )
    return container


async def close_container(container: Container) -> None:
    """Dispose what the container opened (engine, Redis client)."""
    cfg = container.config()
    # Both are lazy (no connection until first use), so asking for them here is cheap.
    if cfg["persistence"] == "sql":
        await container.engine().dispose()
    if cfg["redis_url"]:
        await container.redis().aclose()
