/** The create-environment form's rules, as plain functions (tested without a browser). */
import type { EnvironmentCreate, GpuType } from '../api'

export const LIMITS = {
  maxGpus: 8, maxCpu: 128, maxMemory: 1024, maxDisk: 4096, maxStopAfter: 60 * 24 * 30,
  maxIdleStop: 60 * 24 * 30, maxEnvVars: 64, maxEnvValue: 4096,
}
export const DEFAULT_IDLE_GPU_THRESHOLD = 5
export const IDLE_STOP_OPTIONS = [0, 15, 30, 60, 120, 240]
/** Environment variable names the API accepts (schemas/environments.py _ENV_KEY). */
export const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/
export const DEFAULT_DISK_GIB = 50
/** Environment names are DNS labels (domain/environments/variables.py ENV_NAME_RE): they reach ~/.ssh/config blocks and host names. */
export const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
/** Variables the platform owns (domain/environments/variables.py: one list, kept in step). Compared upper-cased. */
export const RESERVED_ENV_PREFIXES = ['NVIDIA_', 'CUDA_', 'LD_', 'DYLD_', 'PYTHON', 'REMOTEGPU_', 'JUPYTER_', 'SSH_', 'DOCKER_', 'BASH_FUNC_']
export const RESERVED_ENV_NAMES = [
  'PATH', 'HOME', 'SHELL', 'USER', 'LOGNAME', 'HOSTNAME', 'PWD', 'IFS', 'ENV', 'BASH_ENV', 'PROMPT_COMMAND', 'GCONV_PATH',
  'GLIBC_TUNABLES', 'BROWSER', 'NODE_OPTIONS', 'PERL5OPT', 'PERL5LIB', 'RUBYOPT', 'RUBYLIB',
]
export const ALLOWED_DESPITE_PREFIX = [
  'PYTHONUNBUFFERED', 'PYTHONHASHSEED', 'PYTHONDONTWRITEBYTECODE', 'CUDA_LAUNCH_BLOCKING', 'CUDA_DEVICE_MAX_CONNECTIONS', 'CUDA_MODULE_LOADING',
]

/** The rule a variable name falls under ("LD_*", "PATH"), or null when users may set it. */
export function reservedEnvRule(name: string): string | null {
  const upper = name.toUpperCase()
  if (ALLOWED_DESPITE_PREFIX.includes(upper)) return null
  if (RESERVED_ENV_NAMES.includes(upper)) return upper
  const prefix = RESERVED_ENV_PREFIXES.find((p) => upper.startsWith(p))
  return prefix ? `${prefix}*` : null
}
// registry/namespace/name[:tag][@digest] — permissive, lowercase path components.
export const IMAGE_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/

export interface CreateForm {
  name: string
  workspace_id: string
  gpu_model: string | null
  gpu_count: number
  image: string
  cpu_cores: number
  memory_gib: number
  disk_gib: number
  stop_after_minutes: number | null
  /** stop when every GPU stayed under idle_gpu_threshold % and nobody used SSH/Jupyter/terminal this long */
  idle_stop_minutes?: number | null
  idle_gpu_threshold?: number
  /** workspace members with access may log in too (their SSH keys are installed) */
  shared?: boolean
  /** environment variables, edited as rows; rows with neither key nor value are ignored */
  env?: EnvVarRow[]
}

export interface EnvVarRow {
  key: string
  value: string
  /** write-only: sent as secret_env, stored encrypted, never shown again */
  secret?: boolean
}

export interface FieldError {
  key: string
  params?: Record<string, unknown>
}

/** Field → i18n key of the problem (with params); empty when the form is valid. env_rows: row index → problem. */
export type FormErrors = Partial<Record<keyof CreateForm, FieldError>> & { env_rows?: Record<number, FieldError> }

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v)
}

export function validateCreateForm(form: CreateForm, gpuTypes: GpuType[] = []): FormErrors {
  const errors: FormErrors = {}
  if (!NAME_RE.test(form.name.trim())) errors.name = { key: 'create.rules.name' }
  if (!form.workspace_id) errors.workspace_id = { key: 'create.rules.workspace' }
  const model = gpuTypes.find((g) => g.model === form.gpu_model)
  const maxGpus = model ? Math.min(LIMITS.maxGpus, Math.max(model.total, 1)) : LIMITS.maxGpus
  if (!isInt(form.gpu_count) || form.gpu_count < 0 || form.gpu_count > maxGpus) {
    errors.gpu_count = { key: 'create.rules.gpuCount', params: { max: maxGpus } }
  } else if (form.gpu_count > 0 && gpuTypes.length > 0 && !model) {
    errors.gpu_model = { key: 'create.rules.gpuModel' }
  }
  if (form.image.trim() && !IMAGE_RE.test(form.image.trim())) errors.image = { key: 'create.rules.image' }
  if (!isInt(form.cpu_cores) || form.cpu_cores < 1 || form.cpu_cores > LIMITS.maxCpu) {
    errors.cpu_cores = { key: 'create.rules.cpu', params: { max: LIMITS.maxCpu } }
  }
  if (!isInt(form.memory_gib) || form.memory_gib < 1 || form.memory_gib > LIMITS.maxMemory) {
    errors.memory_gib = { key: 'create.rules.memory', params: { max: LIMITS.maxMemory } }
  }
  if (!isInt(form.disk_gib) || form.disk_gib < 1 || form.disk_gib > LIMITS.maxDisk) {
    errors.disk_gib = { key: 'create.rules.disk', params: { max: LIMITS.maxDisk } }
  }
  if (form.stop_after_minutes !== null && (!isInt(form.stop_after_minutes) || form.stop_after_minutes < 1 || form.stop_after_minutes > LIMITS.maxStopAfter)) {
    errors.stop_after_minutes = { key: 'create.rules.stopAfter' }
  }
  const idle = form.idle_stop_minutes ?? null
  if (idle !== null && (!isInt(idle) || idle < 1 || idle > LIMITS.maxIdleStop)) {
    errors.idle_stop_minutes = { key: 'create.rules.idleStop', params: { max: LIMITS.maxIdleStop } }
  }
  const threshold = form.idle_gpu_threshold ?? DEFAULT_IDLE_GPU_THRESHOLD
  if (idle !== null && form.gpu_count > 0 && (!isInt(threshold) || threshold < 0 || threshold > 100)) {
    errors.idle_gpu_threshold = { key: 'create.rules.idleThreshold' }
  }
  const rows = validateEnvRows(form.env ?? [])
  if (Object.keys(rows).length) errors.env_rows = rows
  if (envEntries(form.env ?? []).length > LIMITS.maxEnvVars) errors.env = { key: 'create.rules.envCount', params: { max: LIMITS.maxEnvVars } }
  return errors
}

const isBlankRow = (r: EnvVarRow) => !r.key.trim() && !r.value

/** Row index → problem: a name the API rejects, a name used twice, a value too long. Blank rows are fine. */
export function validateEnvRows(rows: EnvVarRow[]): Record<number, FieldError> {
  const errors: Record<number, FieldError> = {}
  const seen = new Set<string>()
  rows.forEach((row, i) => {
    if (isBlankRow(row)) return
    const key = row.key.trim()
    const rule = reservedEnvRule(key)
    if (!ENV_KEY_RE.test(key)) errors[i] = { key: 'create.rules.envKey' }
    else if (rule) errors[i] = { key: 'create.rules.envReserved', params: { name: key, rule } }
    else if (seen.has(key)) errors[i] = { key: 'create.rules.envDuplicate', params: { name: key } }
    else if (row.value.length > LIMITS.maxEnvValue) errors[i] = { key: 'create.rules.envValue', params: { max: LIMITS.maxEnvValue } }
    seen.add(key)
  })
  return errors
}

/** The rows that will be sent, as [name, value] (blank rows dropped, names trimmed); secret ones too unless plainOnly. */
export function envEntries(rows: EnvVarRow[], which: 'all' | 'plain' | 'secret' = 'all'): [string, string][] {
  return rows
    .filter((r) => !isBlankRow(r) && (which === 'all' || (which === 'secret') === !!r.secret))
    .map((r) => [r.key.trim(), r.value])
}

/** True when the request will wait in the queue (fewer free GPUs of the model than asked). */
export function willQueue(form: CreateForm, gpuTypes: GpuType[]): number | null {
  if (form.gpu_count <= 0) return null
  const model = gpuTypes.find((g) => g.model === form.gpu_model)
  if (!model || model.free >= form.gpu_count) return null
  return model.free
}

export function toCreateBody(form: CreateForm): EnvironmentCreate {
  const body: EnvironmentCreate = {
    name: form.name.trim(),
    workspace_id: form.workspace_id,
    gpu_count: form.gpu_count,
    cpu_cores: form.cpu_cores,
    memory_gib: form.memory_gib,
    disk_gib: form.disk_gib,
  }
  if (form.gpu_count > 0 && form.gpu_model) body.gpu_model = form.gpu_model
  if (form.image.trim()) body.image = form.image.trim()
  if (form.stop_after_minutes) body.stop_after_minutes = form.stop_after_minutes
  // Idle stop watches GPU utilisation: it never fires without GPUs, so it is only sent with them.
  if (form.idle_stop_minutes && form.gpu_count > 0) {
    body.idle_stop_minutes = form.idle_stop_minutes
    body.idle_gpu_threshold = form.idle_gpu_threshold ?? DEFAULT_IDLE_GPU_THRESHOLD
  }
  if (form.shared) body.shared = true
  const env = envEntries(form.env ?? [], 'plain')
  if (env.length) body.env = Object.fromEntries(env)
  const secret = envEntries(form.env ?? [], 'secret')
  if (secret.length) body.secret_env = Object.fromEntries(secret)
  return body
}

export function suggestName(now = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, '0')
  return `env-${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}`
}
