/**
 * What the create form tells the user about capacity, from GET /gpu-types asked with
 * the request being composed (the server applies overcommit and the queue).
 */
import type { CapacityQuery, GpuType } from '../api/types'

export type Verdict =
  | { kind: 'unknown' } // an older server, or nothing to judge by
  | { kind: 'now' }
  | { kind: 'wait'; cpu: number; memory: number }
  | { kind: 'never'; cpu: number; memory: number }

export function capacityQuery(form: { gpu_count: number; cpu_cores: number; memory_gib: number }): CapacityQuery {
  return {
    gpu_count: Math.max(0, Math.floor(form.gpu_count || 0)),
    cpu_cores: Math.max(1, Math.floor(form.cpu_cores || 1)),
    memory_gib: Math.max(1, Math.floor(form.memory_gib || 1)),
  }
}

/** The verdict of one model's answer (for a CPU-only request every model answers the same). */
export function verdictOf(type: GpuType | null | undefined): Verdict {
  if (!type || type.startable_now === undefined) return { kind: 'unknown' }
  if (type.ever_fits === false) return { kind: 'never', cpu: type.max_cpu_cores ?? 0, memory: type.max_memory_gib ?? 0 }
  if (type.startable_now) return { kind: 'now' }
  return { kind: 'wait', cpu: type.cpu_cores_free ?? 0, memory: type.memory_gib_free ?? 0 }
}

/**
 * Defaults that fit the fleet: the first model that can start the request now (else
 * one with free GPUs, else the first), and CPU / memory no larger than such a host offers.
 */
export function fittingDefaults(types: GpuType[], wanted: CapacityQuery): { model: string | null; cpu_cores: number; memory_gib: number } {
  const pick = types.find((g) => g.startable_now) ?? types.find((g) => g.free > 0) ?? types[0]
  if (!pick) return { model: null, cpu_cores: wanted.cpu_cores, memory_gib: wanted.memory_gib }
  if (pick.startable_now !== false) return { model: pick.model, cpu_cores: wanted.cpu_cores, memory_gib: wanted.memory_gib }
  const cpu = pick.cpu_cores_free || pick.max_cpu_cores || wanted.cpu_cores
  const memory = pick.memory_gib_free || pick.max_memory_gib || wanted.memory_gib
  return {
    model: pick.model,
    cpu_cores: Math.max(1, Math.min(wanted.cpu_cores, cpu)),
    memory_gib: Math.max(1, Math.min(wanted.memory_gib, memory)),
  }
}
