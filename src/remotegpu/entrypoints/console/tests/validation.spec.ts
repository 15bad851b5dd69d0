import { describe, expect, it } from 'vitest'
import { toCreateBody, validateCreateForm, willQueue, type CreateForm } from '../src/utils/validation'

const gpus = [
  { model: 'A100', total: 8, free: 2, memory_mib: 81920 },
  { model: 'RTX4090', total: 4, free: 0, memory_mib: 24576 },
]
const base = (): CreateForm => ({
  name: 'train-1', workspace_id: 'ws1', gpu_model: 'A100', gpu_count: 1, image: '', cpu_cores: 8, memory_gib: 32, disk_gib: 50, stop_after_minutes: null,
})

describe('create form validation', () => {
  it('accepts a sensible form and builds the request body', () => {
    expect(validateCreateForm(base(), gpus)).toEqual({})
    expect(toCreateBody({ ...base(), image: ' pytorch/pytorch:2.3 ', stop_after_minutes: 60 })).toEqual({
      name: 'train-1', workspace_id: 'ws1', gpu_count: 1, gpu_model: 'A100', cpu_cores: 8, memory_gib: 32, disk_gib: 50, image: 'pytorch/pytorch:2.3', stop_after_minutes: 60,
    })
    expect(toCreateBody({ ...base(), gpu_count: 0 })).not.toHaveProperty('gpu_model')
  })

  it('rejects bad names, missing workspace, out-of-range resources', () => {
    const errors = validateCreateForm({ ...base(), name: '-bad name', workspace_id: '', cpu_cores: 0, memory_gib: 5000, gpu_count: 9 }, gpus)
    expect(Object.keys(errors).sort()).toEqual(['cpu_cores', 'gpu_count', 'memory_gib', 'name', 'workspace_id'])
    expect(errors.gpu_count).toEqual({ key: 'create.rules.gpuCount', params: { max: 8 } })
    expect(validateCreateForm({ ...base(), name: 'x'.repeat(64) }, gpus).name).toBeDefined()
    expect(validateCreateForm({ ...base(), cpu_cores: 2.5 }, gpus).cpu_cores).toBeDefined()
  })

  it('checks the disk size (1 to 4096 GiB, whole numbers)', () => {
    expect(validateCreateForm({ ...base(), disk_gib: 4096 }, gpus)).toEqual({})
    for (const bad of [0, 4097, 10.5, NaN]) {
      expect(validateCreateForm({ ...base(), disk_gib: bad }, gpus).disk_gib).toEqual({ key: 'create.rules.disk', params: { max: 4096 } })
    }
    expect(toCreateBody({ ...base(), disk_gib: 200 }).disk_gib).toBe(200)
  })

  it('limits the GPU count to what the model has, and needs a model when GPUs are asked', () => {
    expect(validateCreateForm({ ...base(), gpu_model: 'RTX4090', gpu_count: 5 }, gpus).gpu_count?.params).toEqual({ max: 4 })
    expect(validateCreateForm({ ...base(), gpu_model: null, gpu_count: 1 }, gpus).gpu_model).toBeDefined()
    expect(validateCreateForm({ ...base(), gpu_model: null, gpu_count: 0 }, gpus)).toEqual({})
  })

  it('checks the image reference and the stop-after minutes', () => {
    expect(validateCreateForm({ ...base(), image: 'registry.local:5000/team/cuda:12.4-devel' }, gpus)).toEqual({})
    expect(validateCreateForm({ ...base(), image: 'Not An Image!' }, gpus).image).toBeDefined()
    expect(validateCreateForm({ ...base(), stop_after_minutes: -5 }, gpus).stop_after_minutes).toBeDefined()
  })

  it('warns when the request will be queued', () => {
    expect(willQueue(base(), gpus)).toBeNull()
    expect(willQueue({ ...base(), gpu_count: 3 }, gpus)).toBe(2)
    expect(willQueue({ ...base(), gpu_model: 'RTX4090' }, gpus)).toBe(0)
    expect(willQueue({ ...base(), gpu_count: 0 }, gpus)).toBeNull()
  })
})
