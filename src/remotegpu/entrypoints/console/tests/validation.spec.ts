import { describe, expect, it } from 'vitest'
import { ENV_KEY_RE, NAME_RE, reservedEnvRule, toCreateBody, validateCreateForm, validateEnvRows, willQueue, type CreateForm } from '../src/utils/validation'
import { maskEnvValue } from '../src/utils/format'

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

  it('takes environment names as DNS labels, like the API', () => {
    for (const good of ['a', 'train-1', '0x', 'a'.repeat(63)]) expect(NAME_RE.test(good)).toBe(true)
    for (const bad of ['Train', 'my env', 'a_b', 'a.b', '-a', 'a-', 'a'.repeat(64), 'x\n  ProxyCommand id', 'é']) {
      expect(NAME_RE.test(bad)).toBe(false)
      expect(validateCreateForm({ ...base(), name: bad }, gpus).name).toEqual({ key: 'create.rules.name' })
    }
  })

  it('refuses reserved variable names with their rule and sends secret rows as secret_env', () => {
    for (const [name, rule] of [['NVIDIA_VISIBLE_DEVICES', 'NVIDIA_*'], ['cuda_visible_devices', 'CUDA_*'], ['LD_PRELOAD', 'LD_*'],
      ['PYTHONPATH', 'PYTHON*'], ['REMOTEGPU_X', 'REMOTEGPU_*'], ['JUPYTER_TOKEN', 'JUPYTER_*'], ['SSH_AUTH_SOCK', 'SSH_*'],
      ['DOCKER_HOST', 'DOCKER_*'], ['PATH', 'PATH'], ['HOME', 'HOME'], ['SHELL', 'SHELL'], ['USER', 'USER']]) {
      expect(reservedEnvRule(name)).toBe(rule)
      expect(validateEnvRows([{ key: name, value: 'x' }])).toEqual({ 0: { key: 'create.rules.envReserved', params: { name, rule } } })
    }
    for (const free of ['PYTHONUNBUFFERED', 'CUDA_LAUNCH_BLOCKING', 'HF_HOME', 'MY_PATH']) expect(reservedEnvRule(free)).toBeNull()
    const body = toCreateBody({ ...base(), env: [{ key: 'A', value: '1' }, { key: 'TOKEN', value: 's3cret', secret: true }] })
    expect(body.env).toEqual({ A: '1' })
    expect(body.secret_env).toEqual({ TOKEN: 's3cret' })
    expect(toCreateBody({ ...base(), env: [{ key: 'A', value: '1' }] })).not.toHaveProperty('secret_env')
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

  it('checks environment variable names like the API (regex, duplicates, blank rows ignored)', () => {
    expect(validateCreateForm({ ...base(), env: [{ key: 'HF_HOME', value: '/data' }, { key: '', value: '' }, { key: '_x1', value: '' }] }, gpus)).toEqual({})
    for (const bad of ['1ABC', 'MY-VAR', 'A B', 'é', 'A'.repeat(129)]) {
      expect(ENV_KEY_RE.test(bad)).toBe(false)
      expect(validateEnvRows([{ key: bad, value: 'v' }])).toEqual({ 0: { key: 'create.rules.envKey' } })
    }
    expect(ENV_KEY_RE.test('A'.repeat(128))).toBe(true)
    // a value without a name is an error too
    expect(validateEnvRows([{ key: '', value: 'orphan' }])).toEqual({ 0: { key: 'create.rules.envKey' } })
    const errors = validateCreateForm({ ...base(), env: [{ key: 'A', value: '1' }, { key: 'B', value: '2' }, { key: ' A ', value: '3' }] }, gpus)
    expect(errors.env_rows).toEqual({ 2: { key: 'create.rules.envDuplicate', params: { name: 'A' } } })
    expect(Object.keys(errors)).toEqual(['env_rows'])
    expect(validateEnvRows([{ key: 'BIG', value: 'x'.repeat(4097) }])[0]?.key).toBe('create.rules.envValue')
    const many = Array.from({ length: 65 }, (_, i) => ({ key: `V${i}`, value: '' }))
    expect(validateCreateForm({ ...base(), env: many }, gpus).env).toEqual({ key: 'create.rules.envCount', params: { max: 64 } })
  })

  it('checks the idle stop minutes and the GPU threshold range (only with GPUs and idle stop on)', () => {
    expect(validateCreateForm({ ...base(), idle_stop_minutes: 30, idle_gpu_threshold: 0 }, gpus)).toEqual({})
    expect(validateCreateForm({ ...base(), idle_stop_minutes: 30, idle_gpu_threshold: 100 }, gpus)).toEqual({})
    for (const bad of [-1, 101, 2.5, NaN]) {
      expect(validateCreateForm({ ...base(), idle_stop_minutes: 30, idle_gpu_threshold: bad }, gpus).idle_gpu_threshold).toEqual({ key: 'create.rules.idleThreshold' })
    }
    // not used, so not checked: idle stop off, or no GPUs
    expect(validateCreateForm({ ...base(), idle_stop_minutes: null, idle_gpu_threshold: 500 }, gpus)).toEqual({})
    expect(validateCreateForm({ ...base(), gpu_model: null, gpu_count: 0, idle_stop_minutes: 30, idle_gpu_threshold: 500 }, gpus)).toEqual({})
    expect(validateCreateForm({ ...base(), idle_stop_minutes: 0 }, gpus).idle_stop_minutes).toBeDefined()
    expect(validateCreateForm({ ...base(), idle_stop_minutes: 60 * 24 * 30 + 1 }, gpus).idle_stop_minutes).toBeDefined()
  })

  it('sends idle stop, shared and variables only when set', () => {
    const plain = toCreateBody({ ...base(), idle_stop_minutes: null, idle_gpu_threshold: 5, shared: false, env: [{ key: '', value: '' }] })
    for (const k of ['idle_stop_minutes', 'idle_gpu_threshold', 'shared', 'env']) expect(plain).not.toHaveProperty(k)
    expect(toCreateBody({
      ...base(), idle_stop_minutes: 60, idle_gpu_threshold: 10, shared: true,
      env: [{ key: ' HF_HOME ', value: '/root/workspace/hf' }, { key: '', value: '' }, { key: 'WANDB_API_KEY', value: 'k' }],
    })).toEqual({
      name: 'train-1', workspace_id: 'ws1', gpu_count: 1, gpu_model: 'A100', cpu_cores: 8, memory_gib: 32, disk_gib: 50,
      idle_stop_minutes: 60, idle_gpu_threshold: 10, shared: true, env: { HF_HOME: '/root/workspace/hf', WANDB_API_KEY: 'k' },
    })
    // the threshold defaults to the server's 5; without GPUs idle stop is not sent (it could never fire)
    expect(toCreateBody({ ...base(), idle_stop_minutes: 15 })).toMatchObject({ idle_stop_minutes: 15, idle_gpu_threshold: 5 })
    const cpu = toCreateBody({ ...base(), gpu_model: null, gpu_count: 0, idle_stop_minutes: 15 })
    expect(cpu).not.toHaveProperty('idle_stop_minutes')
    expect(cpu).not.toHaveProperty('idle_gpu_threshold')
  })

  it('masks values of variables that look secret', () => {
    expect(maskEnvValue('HF_HOME', '/data')).toBe('/data')
    for (const k of ['HF_TOKEN', 'aws_secret_access_key', 'DB_PASSWORD', 'WANDB_API_KEY', 'keyring']) expect(maskEnvValue(k, 'v')).toBe('••••')
  })
})
