/** Shapes of the RemoteGPU HTTP API (see /api/openapi.json). */

export interface Page<T> {
  items: T[]
  total: number
}

export interface ErrorBody {
  code: string
  message: string
  details?: Record<string, unknown>
}

/** The console's cookie session as the server describes it (no token: those stay in httpOnly cookies). */
export interface BrowserSession {
  csrf_token: string
  expires_in: number
  user: User
}

export interface TokenPair {
  access_token: string
  refresh_token: string
  token_type?: string
  expires_in: number
  /** Present once the server sets the httpOnly session cookie (double-submit CSRF). */
  csrf_token?: string
}

export interface User {
  id: string
  username: string
  email: string
  display_name: string
  is_active: boolean
  is_admin: boolean
  created_at: string
  last_login_at: string | null
  auth_source?: string // "local", "ldap" or "oidc"
}

export interface SshKey {
  id: string
  name: string
  key_type: string
  fingerprint: string
  public_key: string
  created_at: string
}

export interface ApiToken {
  id: string
  name: string
  prefix: string
  created_at: string
  expires_at: string | null
  last_used_at: string | null
  revoked_at: string | null
}

export interface ApiTokenCreated extends ApiToken {
  token: string
}

export type Role = 'owner' | 'admin' | 'member' | 'viewer'

export interface Workspace {
  id: string
  name: string
  slug: string
  is_personal: boolean
  created_at: string
  role: Role | null
}

export interface Member {
  user_id: string
  username: string
  display_name: string
  role: Role
  joined_at: string
}

export interface Usage {
  gpus: number
  environments: number
  cpu_cores: number
  memory_gib: number
  storage_gib: number
}

export interface Quota {
  max_gpus: number | null
  max_environments: number | null
  max_cpu_cores: number | null
  max_memory_gib: number | null
  max_storage_gib: number | null
  usage?: Usage
  /** No limits of its own: the platform's configured default applies. */
  is_default?: boolean
}

/** A user's cap over all the workspaces they own. */
export interface UserQuota extends Quota {
  user_id: string
  username: string
  max_workspaces: number | null
  owned_workspaces: number
}

export interface Invitation {
  id: string
  workspace_id: string
  workspace_name: string
  user_id: string
  username: string
  role: Role
  invited_by: string | null
  status: 'pending' | 'accepted' | 'declined' | 'revoked'
  created_at: string
  expires_at: string
}

export interface AuditEvent {
  id: string
  action: string
  created_at: string
  actor_id: string | null
  target_type: string | null
  target_id: string | null
  ip: string | null
  details: Record<string, unknown>
}

/** A stay in an environment through the SSH gateway (GET /api/v1/ssh-sessions). */
export interface SshSession {
  id: string
  user_id: string
  username: string
  environment_id: string
  environment_name: string
  workspace_id: string
  kind: 'session' | 'jump'
  client_address: string
  key_fingerprint: string
  started_at: string
  ended_at: string | null
  duration_seconds: number | null
  end_reason: string
  channels: string[]
  /** Its terminal output was recorded (GET /api/v1/ssh-sessions/{id}/recording). */
  recorded: boolean
}

export interface Invite {
  id: string
  code: string
  expires_at: string
}

export interface GpuType {
  model: string
  total: number
  free: number
  memory_mib: number
  /** For the request asked about (gpu_count × this model, cpu_cores, memory_gib): would it start at once? */
  startable_now?: boolean
  /** most vCPU / GiB free now on one host with the request's GPUs of this model free */
  cpu_cores_free?: number
  memory_gib_free?: number
  /** most vCPU / GiB any host with the request's GPUs of this model offers when empty */
  max_cpu_cores?: number
  max_memory_gib?: number
  /** false: no host could ever hold the request (create answers 409 never_fits) */
  ever_fits?: boolean
  /** price of one GPU of this model per hour now, minor units; null: not priced */
  hourly_price?: number | null
}

/** The request the create form is composing, as asked of GET /gpu-types. */
export interface CapacityQuery {
  gpu_count: number
  cpu_cores: number
  memory_gib: number
}

export const ENV_STATUSES = [
  'queued', 'starting', 'running', 'stopping', 'stopped', 'deleting', 'deleted', 'failed', 'lost',
] as const
export type EnvStatus = (typeof ENV_STATUSES)[number]

export interface EnvGpu {
  index: number
  uuid: string
  model: string
}

export interface Environment {
  id: string
  name: string
  workspace_id: string
  owner_id: string
  status: EnvStatus
  queue_position: number | null
  gpu_count: number
  gpu_model: string | null
  host_id: string | null
  gpus: EnvGpu[]
  cpu_cores: number
  memory_gib: number
  /** size of its disk; kept while stopped, counted against the workspace's storage quota until deleted */
  disk_gib?: number
  image: string
  created_at: string
  status_message: string | null
  stop_after_minutes?: number | null
  host_name?: string | null
  with_gpu?: boolean
  desired?: 'running' | 'stopped' | 'deleted'
  started_at?: string | null
  /** plain variables with values; empty for those who may not operate it (viewers) */
  env?: Record<string, string>
  /** every variable by name; value null for secret ones and for viewers */
  variables?: EnvVariable[]
  idle_stop_minutes?: number | null
  /** workspace members with access may log in too */
  shared?: boolean
}

export interface EnvVariable {
  name: string
  secret: boolean
  value: string | null
}

export interface EnvironmentCreate {
  name: string
  workspace_id: string
  image?: string
  gpu_count: number
  gpu_model?: string
  cpu_cores: number
  memory_gib: number
  disk_gib?: number
  stop_after_minutes?: number
  /** 1 to 43200: stop when every GPU stayed under idle_gpu_threshold % and nobody used SSH/Jupyter/terminal */
  idle_stop_minutes?: number
  /** percent, 0 to 100 (server default 5) */
  idle_gpu_threshold?: number
  shared?: boolean
  /** at most 64 with secret_env; names match ^[A-Za-z_][A-Za-z0-9_]{0,127}$ and are not reserved, values at most 4096 characters */
  env?: Record<string, string>
  /** write-only variables: stored encrypted, never returned */
  secret_env?: Record<string, string>
}

export interface EnvEvent {
  at: string
  from_status: EnvStatus | null
  to_status: EnvStatus
  reason: string | null
}

export interface EnvAccess {
  ssh?: { host: string; port: number; user: string; command: string; config: string; known_hosts?: string | null; via?: 'gateway' | 'direct'; jump_command?: string | null } | null
  /** The environment's own published SSH port, when the SSH gateway is the default way in. */
  ssh_direct?: { host: string; port: number; user: string; command: string; config: string; known_hosts?: string | null } | null
  jupyter?: { url: string } | null
  desktop?: { url: string } | null
  terminal?: { path: string } | null
}

export interface HostGpu {
  index: number
  uuid: string
  model: string
  memory_mib?: number
  healthy?: boolean
  allocated?: boolean
  utilization?: number | null
  numa_node?: number | null
  nvlink_group?: number | null
}

export type HostStatus = 'ready' | 'cordoned' | 'draining' | 'offline' | (string & {})

export interface Host {
  id: string
  name: string
  /** offline while the agent is silent, else equal to `schedulable` */
  status: HostStatus
  /** the admin's choice (cordon / uncordon / drain); kept while the host is offline */
  schedulable: Exclude<HostStatus, 'offline'>
  /** public address */
  address: string
  /** where the platform reaches the host's private services, e.g. JupyterLab (agent --private-address) */
  private_address: string
  last_heartbeat_at: string | null
  gpus: HostGpu[]
  cpu_cores: number
  memory_gib: number
  disk_gib?: number
  runtime?: string
  runtime_healthy?: boolean
  fake_gpus?: boolean
  environments?: number
  labels?: Record<string, string>
  /** its agent may report loopback addresses (an agent on the server's own machine) */
  allow_loopback?: boolean
  /** empty when healthy */
  conditions?: HostCondition[]
  /** containers/volumes of this installation the server did not ask for: stopped and kept, never removed by the agent */
  quarantined?: { env_id: string; host_id: string; since: string }[]
  /** scheduling counts CPU / memory requests against capacity × these (containers keep their limits) */
  cpu_overcommit?: number
  memory_overcommit?: number
  schedulable_cpu_cores?: number
  schedulable_memory_gib?: number
  /** a Kubernetes host (one host stands for the cluster): the cluster's nodes as its agent reports them */
  cluster_nodes?: ClusterNode[]
}

export interface ClusterNode {
  name: string
  ready: boolean
  /** false when cordoned */
  schedulable: boolean
  gpu_capacity: number
  gpu_allocatable: number
  /** GPUs the platform's Pods on this node request */
  gpu_allocated: number
  cpu: string
  memory: string
  labels: Record<string, string>
}

export interface HostCreated extends Host {
  join_token: string
}

/** Something an admin should look at, e.g. `gpu_uuid_conflict`: the agent reports a GPU another host owns. */
export interface HostCondition {
  code: string
  message: string
  details: Record<string, string>
}

export interface HostToken {
  host_id: string
  join_token: string
}

export interface StreamEvent {
  type: string
  environment?: Environment
}
