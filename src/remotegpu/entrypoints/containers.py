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
from remotegpu.adapters.workloads.router_state import LocalRouterState, RedisRouterState
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
from remotegpu.application.identity.directory import DirectoryPolicy, GroupGrant
from remotegpu.application.identity.maintenance import Maintenance
from remotegpu.application.shared.clock import SystemClock
from remotegpu.application.environments.autostop import AutoStop
from remotegpu.application.environments.credentials import EnvironmentCredentials
from remotegpu.application.environments.entry import EnvironmentEntry
from remotegpu.application.environments.ssh_gateway import GatewayAccess
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
from remotegpu.adapters.images.memory_store import InMemoryImageStore
from remotegpu.application.images.service import ImageService
from remotegpu.domain.environments.images import ImagePolicy, parse_patterns
from remotegpu.entrypoints.config import Settings
from remotegpu.entrypoints.data_dir import secure_data_dir, sqlite_file_of
from remotegpu.entrypoints.readiness import AlwaysReady, SqlReadiness
from remotegpu.adapters.support.memory import InMemoryTicketRepository
from remotegpu.adapters.notifications.phones import InMemoryPhoneRepository
from remotegpu.application.notifications.phones import PhoneService
from remotegpu.application.support.service import SupportSettings, TicketService
from remotegpu.adapters.billing.memory_store import InMemoryBillingStore
from remotegpu.adapters.billing.offline import OfflineTransfers
from remotegpu.application.billing.funds import FundsCheck
from remotegpu.application.billing.metering import BillingSettings, Metering
from remotegpu.application.billing.plans import PlanService, Reservations
from remotegpu.application.billing.recording import MeteringUnitOfWork
from remotegpu.application.billing.service import BillingService


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


def _hot_reads(engine):
    from remotegpu.adapters.db.hot_reads import hot_reads_for

    return hot_reads_for(engine)


def _sql_uow(session_factory):
    from remotegpu.adapters.db.uow import SqlUnitOfWork

    return SqlUnitOfWork(session_factory)


def _sql_webhook_store(session_factory, sealer):
    from remotegpu.adapters.webhooks.sql_store import SqlWebhookStore

    return SqlWebhookStore(session_factory, sealer)


def _object_store(settings: Settings):
    """The configured object store: files under the data dir (default) or S3 (minio client)."""
    if settings.storage_backend == "s3":
        from remotegpu.adapters.storage.s3_store import S3Config, S3ObjectStore

        return S3ObjectStore(S3Config(
            endpoint=settings.s3_endpoint, bucket=settings.s3_bucket, access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key, region=settings.s3_region or None, addressing=settings.s3_addressing,
            verify_tls=settings.s3_verify_tls, cors_origins=_cors_origins(settings),
        ))
    from remotegpu.adapters.storage.local_store import LocalObjectStore

    return LocalObjectStore(settings.storage_dir or settings.data_dir / "storage")


def _cors_origins(settings: Settings) -> tuple[str, ...]:
    """Who may use presigned URLs from a browser: REMOTEGPU_S3_CORS_ORIGINS, else the console's own origin."""
    from urllib.parse import urlsplit

    given = tuple(o.strip().rstrip("/") for o in settings.s3_cors_origins.split(",") if o.strip())
    if given or not settings.public_url:
        return given
    url = urlsplit(settings.public_url)
    return (f"{url.scheme}://{url.netloc}",)


def _sql_storage_catalog(session_factory):
    from remotegpu.adapters.storage.sql_catalog import SqlStorageCatalog

    return SqlStorageCatalog(session_factory)


def _storage_service(uow, catalog, store, clock, policy, settings: Settings):
    from remotegpu.application.storage.service import StorageService

    return StorageService(uow=uow, catalog=catalog, store=store, clock=clock, policy=policy,
                          grace=timedelta(hours=settings.storage_upload_grace_hours),
                          presign_ttl=timedelta(seconds=settings.storage_presign_seconds))


def _env_storage_tokens(uow, secret_key: str):
    from remotegpu.application.storage.env_tokens import EnvironmentStorageTokens

    return EnvironmentStorageTokens(uow=uow, key=f"storage-env-token:{secret_key}".encode())


def _storage_mounts(service):
    from remotegpu.application.storage.service import StorageMounts

    return StorageMounts(service)


def _job_output_versions(service):
    from remotegpu.application.storage.job_outputs import JobOutputVersions

    return JobOutputVersions(service)


def _job_output_receiver(uow, clock, versions):
    from remotegpu.application.workloads.outputs import JobOutputReceiver

    return JobOutputReceiver(uow=uow, clock=clock, versions=versions)


def _storage_catalog_memory():
    from remotegpu.adapters.storage.memory_catalog import InMemoryStorageCatalog

    return InMemoryStorageCatalog()


def _sql_tickets(session_factory):
    from remotegpu.adapters.support.sql import SqlTicketRepository

    return SqlTicketRepository(session_factory)


def _sql_ssh_sessions(session_factory):
    from remotegpu.adapters.access.ssh_sessions import SqlSshSessionLog

    return SqlSshSessionLog(session_factory)


def _memory_ssh_sessions():
    from remotegpu.adapters.access.ssh_sessions import InMemorySshSessionLog

    return InMemorySshSessionLog()


def _kube_pods(settings: Settings):
    from remotegpu.adapters.runtime.kube_apps import KubePods

    return KubePods(kubeconfig=settings.kubeconfig or None, namespace=settings.kube_namespace,
                    scope=settings.effective_docker_scope())


def _support_settings(settings: Settings) -> SupportSettings:
    from remotegpu.domain.support.calendar import BusinessHours
    from remotegpu.domain.support.sla import SlaPolicy, parse_targets

    days = lambda n: timedelta(days=n)  # noqa: E731
    return SupportSettings(
        sla=SlaPolicy(hours=BusinessHours.parse(settings.support_business_hours, settings.support_timezone),
                      targets=parse_targets(settings.support_sla_targets), warn_ratio=settings.support_sla_warn_percent / 100),
        close_solved_after=days(settings.support_close_solved_days),
        remind_pending_after=days(settings.support_remind_pending_days),
        solve_pending_after=days(settings.support_solve_pending_days),
        retention=days(settings.support_retention_days) if settings.support_retention_days else None,
        max_attachment_bytes=settings.support_attachment_max_bytes,
    )


def _sms_sender(settings: Settings):
    """The SMS provider's client, or None when no provider is configured (no SMS channel)."""
    if not settings.sms_provider:
        return None
    from remotegpu.adapters.notifications.aliyun_sms import AliyunSmsSender, AliyunSmsSettings
    from remotegpu.domain.notifications.sms import TEMPLATE_NOTIFY, TEMPLATE_VERIFY

    if settings.sms_provider == "tencent":
        from remotegpu.adapters.notifications.tencent_sms import TencentSmsSender, TencentSmsSettings

        aliyun_defaults = {"sms_endpoint", "sms_region"} - settings.model_fields_set  # Aliyun's defaults don't apply
        return TencentSmsSender(TencentSmsSettings(
            secret_id=settings.sms_access_key_id, secret_key=settings.sms_access_key_secret, app_id=settings.sms_app_id,
            sign_name=settings.sms_sign_name, templates={TEMPLATE_VERIFY: settings.sms_template_verify,
                                                         TEMPLATE_NOTIFY: settings.sms_template_notify},
            **({} if "sms_endpoint" in aliyun_defaults else {"endpoint": settings.sms_endpoint}),
            **({} if "sms_region" in aliyun_defaults else {"region": settings.sms_region}),
        ))
    return AliyunSmsSender(AliyunSmsSettings(
        access_key_id=settings.sms_access_key_id, access_key_secret=settings.sms_access_key_secret,
        sign_name=settings.sms_sign_name, endpoint=settings.sms_endpoint, region=settings.sms_region,
        templates={TEMPLATE_VERIFY: settings.sms_template_verify, TEMPLATE_NOTIFY: settings.sms_template_notify},
    ))


def _sql_phones(session_factory):
    from remotegpu.adapters.notifications.phones import SqlPhoneRepository

    return SqlPhoneRepository(session_factory)


def _sql_billing_store(session_factory):
    from remotegpu.adapters.billing.sql_store import SqlBillingStore

    return SqlBillingStore(session_factory)


def _sql_image_store(session_factory):
    from remotegpu.adapters.images.sql_store import SqlImageStore

    return SqlImageStore(session_factory)


def _image_registry(settings: Settings):
    """The configured registry v2, or none (the catalog then holds hosts' local images only)."""
    from remotegpu.application.images.ports import NoRegistry

    if not settings.registry_url:
        return NoRegistry()
    from remotegpu.adapters.images.registry import HttpRegistry

    return HttpRegistry(
        settings.registry_url, username=settings.registry_username, password=settings.registry_password,
        pull_username=settings.registry_pull_username, pull_password=settings.registry_pull_password,
        signer=_registry_token_signer(settings),
    )


def _registry_token_signer(settings: Settings):
    """The platform's registry token signer (token auth), or None (static credentials)."""
    if not (settings.registry_url and settings.registry_token_key):
        return None
    from remotegpu.adapters.images.registry_token import JwtRegistryTokenSigner

    return JwtRegistryTokenSigner.from_file(settings.registry_token_key, issuer=settings.registry_token_issuer,
                                            service=settings.registry_token_service)


def _registry_access(uow, store, clock, registry, settings: Settings):
    """Host credentials and the realm (token auth only; None otherwise)."""
    signer = getattr(registry, "signer", None)
    if signer is None:
        return None
    from remotegpu.application.images.registry_access import RegistryAccess

    return RegistryAccess(
        uow=uow, store=store, clock=clock, signer=signer,
        key=f"registry-host-credential:{settings.effective_secret_key()}".encode(), registry=registry.address,
        namespace=settings.registry_namespace, credential_ttl_seconds=settings.registry_credential_ttl_seconds,
        token_ttl_seconds=settings.registry_token_ttl_seconds,
    )


def _redis(url: str):
    from redis.asyncio import Redis

    return Redis.from_url(url)


def _task_handlers(maintenance: Maintenance, deliveries=None, storage=None, monitoring=None, jobs=None, settings=None,
                   tickets=None) -> dict:
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

    async def support_sweep() -> None:
        if tickets is not None:  # SLA alerts, pending reminders/auto-solve, closing solved tickets (idempotent)
            await tickets().sweep()

    async def collect_storage() -> None:
        if storage is not None:  # abandoned uploads and unreferenced blobs (past the grace period)
            await storage().collect()

    return {
        "identity.purge_expired_refresh_tokens": lambda: maintenance.purge_expired_refresh_tokens(),
        "identity.purge_old_audit_events": lambda: maintenance.purge_old_audit_events(),
        DELIVER_TASK: deliver,
        "notifications.send_due": send_due,
        "storage.collect": collect_storage,
        **(monitoring or {}),
        "support.sweep": support_sweep,
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


class _LateNotifier:
    """The notifications dispatcher, looked up when first used: it is built from the unit of
    work that publishes webhooks, so the webhook service cannot take it directly."""

    def __init__(self, container):
        self._container = container

    async def dispatch(self, messages):
        return await self._container.notification_dispatcher().dispatch(messages)


class _LateQueue:
    """The task queue, looked up when first used: it is built from the task handlers,
    which reach the unit of work that the dispatcher (its user) is part of."""

    def __init__(self, container):
        self._container = container

    async def enqueue(self, task: str, **kwargs) -> None:
        await self._container.task_queue().enqueue(task, **kwargs)


def _metrics_store(persistence: str, settings: Settings, session_factory):
    from remotegpu.domain.monitoring.metrics import Retention

    retention = Retention(
        raw_seconds=int(settings.metrics_raw_retention_hours * 3600),
        minute_seconds=int(settings.metrics_minute_retention_days * 86400),
        hour_seconds=int(settings.metrics_hour_retention_days * 86400),
    )
    if persistence == "memory":
        from remotegpu.adapters.monitoring.memory_store import InMemoryMetricsStore

        store = InMemoryMetricsStore(retention=retention)
    else:
        from remotegpu.adapters.monitoring.sql_store import SqlMetricsStore

        store = SqlMetricsStore(session_factory(), retention=retention)
    if settings.metrics_store == "prometheus":
        from remotegpu.adapters.monitoring.prometheus_store import PrometheusMetricsStore

        return PrometheusMetricsStore(settings.metrics_prometheus_url, store)
    return store


def _monitoring_tasks(container) -> dict:
    """Worker tasks of the monitoring context (they also run in every server, see
    entrypoints/monitoring_runner.py): alert evaluation and the store's compaction."""
    import time as _time

    async def evaluate() -> None:
        await container.alert_service().evaluate()

    async def compact() -> None:
        await container.metrics_store().compact(_time.time())

    return {"monitoring.evaluate_alerts": evaluate, "monitoring.compact": compact}


def _alert_store(persistence: str, session_factory):
    if persistence == "memory":
        from remotegpu.adapters.monitoring.memory_alerts import InMemoryAlertStore

        return InMemoryAlertStore()
    from remotegpu.adapters.monitoring.sql_alerts import SqlAlertStore

    return SqlAlertStore(session_factory())


def _alert_service(uow, store, metrics, clock, notify, policy, publish=None, balances=None):
    from remotegpu.application.monitoring.alerts import AlertService

    return AlertService(uow=uow, store=store, metrics=metrics, clock=clock, notify=notify,
                        default_quota=getattr(policy, "default_quota", None), publish=publish, balances=balances)


def _metrics_service(uow, store):
    from remotegpu.application.monitoring.service import MetricsService

    return MetricsService(uow=uow, store=store)


_HASH_PROFILES = {"default": {}, "fast": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}}


def _ldap_directory(s: Settings):
    """The LDAP directory people sign in against, or None (REMOTEGPU_LDAP_URL unset)."""
    if not s.ldap_url:
        return None
    from remotegpu.adapters.identity.ldap_directory import LdapDirectory, LdapSettings

    return LdapDirectory(LdapSettings(
        url=s.ldap_url, user_base=s.ldap_user_base, user_filter=s.ldap_user_filter, bind_dn=s.ldap_bind_dn,
        bind_password=s.ldap_bind_password, group_base=s.ldap_group_base, group_filter=s.ldap_group_filter,
        username_attribute=s.ldap_username_attribute, email_attribute=s.ldap_email_attribute,
        name_attribute=s.ldap_name_attribute, start_tls=s.ldap_start_tls,
    ))


def _group_policy(admin_groups: str, workspace_groups: str) -> DirectoryPolicy:
    from remotegpu.domain.workspaces.models import Role

    grants = []
    for pair in filter(None, (p.strip() for p in workspace_groups.split(","))):
        group, _, target = pair.partition("=")
        workspace_id, _, role = target.partition(":")
        grants.append(GroupGrant(group.strip(), workspace_id.strip(), Role(role.strip())))
    admins = frozenset(g.strip() for g in admin_groups.split(",") if g.strip())
    return DirectoryPolicy(admin_groups=admins, grants=tuple(grants))


def _directory_policy(s: Settings) -> DirectoryPolicy:
    return _group_policy(s.ldap_admin_groups, s.ldap_workspace_groups)


def _oidc_policy(s: Settings) -> DirectoryPolicy:
    return _group_policy(s.oidc_admin_groups, s.oidc_workspace_groups)


def _oidc_client(s: Settings):
    """The OpenID Connect provider's client, or None (REMOTEGPU_OIDC_ISSUER unset)."""
    if not s.oidc_issuer:
        return None
    from remotegpu.adapters.identity.oidc_client import OidcClient, OidcSettings

    base = (s.public_url or f"http://{s.http_host}:{s.http_port}").rstrip("/")
    return OidcClient(OidcSettings(
        issuer=s.oidc_issuer, client_id=s.oidc_client_id, client_secret=s.oidc_client_secret,
        redirect_uri=f"{base}/api/v1/auth/oidc/callback", scopes=s.oidc_scopes,
        username_claim=s.oidc_username_claim, groups_claim=s.oidc_groups_claim,
        post_logout_redirect_uri=f"{base}/login",
    ))


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
    # The cached hot reads' one statement, straight on the driver (adapters/db/hot_reads.py).
    hot_reads = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_hot_reads, engine),
        memory=providers.Object(None),
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
    # The inference router's shared state: Redis when several server processes route.
    serve_router_state = providers.Selector(
        config.ratelimit,
        memory=providers.Singleton(LocalRouterState),
        redis=providers.Singleton(lambda r, ns: RedisRouterState(r, prefix=f"{ns}:serve"), redis, config.redis_namespace),
    )
    # Secrets the server keeps and uses but never shows (SSH private keys, secret variables, webhook secrets).
    sealer = providers.Singleton(AesGcmSealer, config.secret_key)
    __self__ = providers.Self()
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
        notifier=providers.Singleton(_LateNotifier, __self__),
    )
    # --- billing: every status transition is a meter reading, in its own transaction ------
    billing_store = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_billing_store, session_factory),
        memory=providers.Singleton(InMemoryBillingStore),
    )
    metering_uow = providers.Factory(MeteringUnitOfWork, storage_uow, billing_store, clock)
    # Environment lifecycle transitions become webhook events after their commit.
    events_uow = providers.Factory(EnvironmentEventsUnitOfWork, metering_uow, providers.Factory(lambda s: s.publish, webhook_service))
    # Notifications (application/notifications): committed environment and audit events
    # become in-app messages and emails (NotifyingUnitOfWork wraps every use case's uow).
    notification_repo = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_notifications, session_factory),
        memory=providers.Singleton(InMemoryNotificationRepository),
    )
    unread_signals = providers.Singleton(LocalUnreadSignals)
    # SMS: verified phone numbers, per-number limits, the provider (None: no SMS channel).
    phone_repo = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_phones, session_factory),
        memory=providers.Singleton(InMemoryPhoneRepository),
    )
    sms_sender = providers.Singleton(_sms_sender, settings)
    phone_service = providers.Singleton(
        PhoneService, repo=phone_repo, clock=clock, sender=sms_sender,
        code_key=providers.Callable(lambda k: k.encode(), config.secret_key),
    )
    email_sender = providers.Singleton(_email_sender, settings)
    email_enabled = providers.Callable(lambda s: bool(s.smtp_host), settings)
    late_task_queue = providers.Singleton(_LateQueue, __self__)
    plain_uow = providers.Factory(ChangeTrackingUnitOfWork, events_uow, change_feed)
    notification_dispatcher = providers.Singleton(
        Dispatcher, uow=plain_uow.provider, repo=notification_repo, clock=clock, queue=late_task_queue,
        signals=unread_signals, email_enabled=email_enabled, phones=phone_service,
    )
    # Every scheduling transaction ends with a queue pass: the queue moves whenever capacity frees.
    workspace_policy = providers.Singleton(workspace_policy_from, settings)
    reservations = providers.Singleton(Reservations, store=billing_store, clock=clock)  # plans GPUs are not lent
    # Environments queue first, then training jobs (application/workloads/queue_pass.py).
    queueing_uow = providers.Factory(QueueingUnitOfWork, plain_uow, providers.Singleton(
        ChainedQueuePass,
        providers.Singleton(
            QueuePass, clock=clock, quotas=workspace_policy, reservations=reservations,
            locality=providers.Callable(lambda c: c.image_service().locality, __self__),
        ),
        providers.Singleton(JobQueuePass, clock=clock, quotas=workspace_policy),
    ))
    uow = providers.Factory(NotifyingUnitOfWork, queueing_uow, notification_dispatcher)
    notification_service = providers.Singleton(
        NotificationService, repo=notification_repo, clock=clock, signals=unread_signals, email_enabled=email_enabled,
    )
    delivery_service = providers.Singleton(
        DeliveryService, uow=plain_uow.provider, repo=notification_repo, clock=clock, sender=email_sender,
        queue=late_task_queue, public_url=providers.Callable(lambda s: s.public_url, settings), phones=phone_service,
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
        local_passwords=config.local_passwords,
    )
    directory = providers.Singleton(_ldap_directory, settings)
    directory_policy = providers.Singleton(_directory_policy, settings)
    oidc_client = providers.Singleton(_oidc_client, settings)
    oidc_policy = providers.Singleton(_oidc_policy, settings)
    auth_service = providers.Singleton(
        AuthService, uow=uow.provider, clock=clock, hasher=hasher, issuer=token_issuer,
        limiter=rate_limiter, users=user_cache, settings=auth_settings, directory=directory,
        directory_policy=directory_policy,
    )
    account_service = providers.Singleton(
        AccountService, uow=uow.provider, clock=clock, hasher=hasher, users=user_cache, limiter=rate_limiter
    )
    admin_service = providers.Singleton(AdminService, uow=uow.provider, clock=clock, hasher=hasher, users=user_cache)
    workspace_service = providers.Singleton(
        WorkspaceService, uow=uow.provider, clock=clock, policy=workspace_policy, reads=read_uow.provider, gate=hot_reads,
    )
    invitation_service = providers.Singleton(InvitationService, uow=uow.provider, clock=clock, policy=workspace_policy)
    maintenance = providers.Singleton(
        Maintenance, uow=uow.provider, clock=clock,
        audit_retention=providers.Factory(timedelta, days=config.audit_retention_days),
    )

    # --- storage: datasets and models (their use cases authorize with the plain unit of work) ---
    object_store = providers.Singleton(_object_store, settings)
    storage_catalog = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_storage_catalog, session_factory),
        memory=providers.Singleton(_storage_catalog_memory),
    )
    storage_service = providers.Singleton(
        _storage_service, storage_uow.provider, storage_catalog, object_store, clock, workspace_policy, settings,
    )
    storage_mounts = providers.Singleton(_storage_mounts, storage_service)
    job_output_versions = providers.Singleton(_job_output_versions, storage_service)
    env_storage_tokens = providers.Singleton(_env_storage_tokens, uow.provider, config.secret_key)

    image_policy = providers.Singleton(
        lambda patterns, base: ImagePolicy(parse_patterns(patterns or ""), default_image=base), config.allowed_images, config.base_image,
    )
    # Per-environment SSH keys, their private halves sealed under the server's secret.
    environment_credentials = providers.Singleton(
        EnvironmentCredentials, keys=providers.Singleton(Ed25519KeyPairs), sealer=sealer,
    )
    # --- images (issue 15): the catalog, saves and builds (their agents' jobs) ----------
    image_store = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_image_store, session_factory),
        memory=providers.Singleton(InMemoryImageStore),
    )
    image_registry = providers.Singleton(_image_registry, settings)
    registry_access = providers.Singleton(_registry_access, uow.provider, image_store, clock, image_registry, settings)
    image_service = providers.Singleton(
        ImageService, uow=storage_uow.provider, store=image_store, clock=clock, registry=image_registry,
        namespace=providers.Callable(lambda s: s.registry_namespace, settings), quotas=workspace_policy,
    )
    environment_service = providers.Singleton(
        EnvironmentService, uow=uow.provider, clock=clock, default_image=config.base_image, credentials=environment_credentials,
        quotas=workspace_policy, images=image_policy, secrets=sealer, reads=read_uow.provider, data_mounts=storage_mounts,
        funds=providers.Callable(lambda on, check: check if on else None, config.billing_enabled, providers.Singleton(
            FundsCheck, store=billing_store, clock=clock, currency=config.billing_currency)),
        catalog=image_service, gate=hot_reads,
    )
    host_service = providers.Singleton(HostService, uow=uow.provider, clock=clock, environments=environment_service)
    access_gateway = providers.Singleton(DirectSshGateway)
    agent_service = providers.Singleton(
        AgentService, uow=uow.provider, clock=clock, environments=environment_service, heartbeat_seconds=config.heartbeat_seconds,
        gateway=access_gateway, feed=change_feed,
        allow_loopback=config.allow_loopback_agents, stranded_after_seconds=config.stranded_after_seconds,
        data_mounts=storage_mounts, storage_tokens=env_storage_tokens, public_url=providers.Callable(lambda s: s.public_url, settings),
        images=image_service, registry=image_registry, registry_access=registry_access,
        training_nodes=providers.Singleton(JobHeartbeat, clock, job_logs, data_mounts=storage_mounts,
                                           services=providers.Singleton(ServiceNodes, clock, data_mounts=storage_mounts)),
    )
    autostop = providers.Singleton(AutoStop, uow=uow.provider, clock=clock, environments=environment_service)
    environment_watch = providers.Singleton(EnvironmentWatch, uow=uow.provider, environments=environment_service, feed=change_feed)
    kube_pods = providers.Singleton(_kube_pods, settings)  # Kubernetes hosts' Pods, looked up on first use
    environment_entry = providers.Singleton(
        EnvironmentEntry, uow=uow.provider, autostop=autostop, gateway=access_gateway, credentials=environment_credentials,
        pod_addresses=providers.Callable(lambda k: k.get, kube_pods),
    )

    # --- the SSH gateway (adapters/access/ssh_gateway.py) -------------------------------
    ssh_session_log = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_ssh_sessions, session_factory),
        memory=providers.Singleton(_memory_ssh_sessions),
    )
    ssh_gateway_access = providers.Singleton(
        GatewayAccess, uow=uow.provider, entry=environment_entry, log=ssh_session_log, clock=clock,
        recordings=object_store, record_sessions=providers.Callable(lambda s: s.ssh_gateway_record, settings),
    )

    # --- support tickets (application/support) ---------------------------------------
    ticket_repo = providers.Selector(
        config.persistence,
        sql=providers.Singleton(_sql_tickets, session_factory),
        memory=providers.Singleton(InMemoryTicketRepository),
    )
    ticket_service = providers.Singleton(
        TicketService, uow=plain_uow.provider, repo=ticket_repo, clock=clock, notifier=notification_dispatcher,
        publish=providers.Factory(lambda s: s.publish, webhook_service),
        settings=providers.Singleton(_support_settings, settings), objects=object_store,
    )

    billing_settings = providers.Singleton(
        BillingSettings, enabled=config.billing_enabled, tick_seconds=config.billing_tick_seconds,
        arrears_delete_days=config.billing_arrears_delete_days, currency=config.billing_currency,
    )
    plan_service = providers.Singleton(PlanService, store=billing_store, uow=uow.provider, clock=clock,
                                       currency=config.billing_currency, reservations=reservations)
    metering = providers.Singleton(
        Metering, store=billing_store, clock=clock, settings=billing_settings, uow=uow.provider,
        environments=environment_service, notify=providers.Factory(lambda d: d.dispatch, notification_dispatcher),
        plans=plan_service, publish=providers.Factory(lambda s: s.publish, webhook_service),
    )
    billing_service = providers.Singleton(
        BillingService, store=billing_store, uow=uow.provider, clock=clock, payments=providers.Singleton(OfflineTransfers),
        currency=config.billing_currency, enabled=config.billing_enabled,
        publish=providers.Factory(lambda s: s.publish, webhook_service),
    )

    # --- workloads (training jobs) ----------------------------------------------------
    training_job_service = providers.Singleton(
        TrainingJobService, uow=uow.provider, clock=clock, logs=job_logs, default_image=config.base_image,
        images=image_policy, quotas=workspace_policy, notify=providers.Callable(lambda a: a.poke, agent_service),
        data_mounts=storage_mounts, outputs=job_output_versions,
    )
    job_output_receiver = providers.Singleton(_job_output_receiver, uow.provider, clock, job_output_versions)
    inference_service_service = providers.Singleton(
        InferenceServiceService, uow=uow.provider, clock=clock, default_image=config.base_image, images=image_policy,
        data_mounts=storage_mounts,
    )

    # --- background work -----------------------------------------------------------
    task_handlers = providers.Singleton(_task_handlers, maintenance, delivery_service.provider, storage_service.provider,
                                        providers.Callable(lambda c: _monitoring_tasks(c), __self__),
                                        training_job_service.provider, settings, ticket_service.provider)
    task_queue = providers.Selector(
        config.queue,
        inline=providers.Singleton(InlineTaskQueue, task_handlers),
        dramatiq=providers.Singleton(
            DramatiqTaskQueue, providers.Singleton(make_broker, config.redis_url, config.redis_namespace)
        ),
    )

    # --- monitoring (adapters/monitoring, application/monitoring) -------------------
    metrics_store = providers.Singleton(_metrics_store, config.persistence, settings, session_factory.provider)
    metrics_service = providers.Singleton(_metrics_service, read_uow.provider, metrics_store)
    alert_store = providers.Singleton(_alert_store, config.persistence, session_factory.provider)
    alert_service = providers.Singleton(
        _alert_service, read_uow.provider, alert_store, metrics_store, clock,
        providers.Callable(lambda d: d.dispatch, notification_dispatcher), workspace_policy,
        providers.Callable(lambda w: w.publish, webhook_service),
        providers.Callable(lambda b: b.balances_and_burn, billing_service),
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
            "local_passwords": settings.local_passwords,
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
            "billing_enabled": settings.billing_enabled,
            "billing_tick_seconds": settings.billing_tick_seconds,
            "billing_arrears_delete_days": settings.billing_arrears_delete_days,
            "billing_currency": settings.billing_currency,
        }
    )
    return container


async def close_container(container: Container) -> None:
    """Dispose what the container opened (engine, Redis client)."""
    cfg = container.config()
    # Both are lazy (no connection until first use), so asking for them here is cheap.
    if cfg["persistence"] == "sql":
        if (hot := container.hot_reads()) is not None:
            await hot.close()
        await container.engine().dispose()
    if cfg["redis_url"]:
        await container.redis().aclose()
    sms = container.sms_sender()
    if sms is not None:
        await sms.close()
