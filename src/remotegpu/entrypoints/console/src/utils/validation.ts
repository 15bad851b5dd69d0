/** The create-environment form's rules, as plain functions (tested without a browser). */
import type { EnvironmentCreate, GpuType } from '../api'

export const LIMITS = { maxGpus: 8, maxCpu: 128, maxMemory: 1024, maxDisk: 4096, maxStopAfter: 60 * 24 * 30 }
export const DEFAULT_DISK_GIB = 50
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
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
}

/** Field → i18n key of the problem (with params); empty when the form is valid. */
export type FormErrors = Partial<Record<keyof CreateForm, { key: string; params?: Record<string, unknown> }>>

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
  return errors
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
  return body
}

export function suggestName(now = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, '0')
  return `env-${pad(now.getMonth() + 1)}${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}`
}
