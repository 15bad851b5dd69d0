import { beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import ElementPlus from 'element-plus'
import { configureClient } from '../src/api/client'
import { makeI18n } from '../src/i18n'
import EnvironmentCreateView from '../src/views/EnvironmentCreateView.vue'
import { fakeFetch, json } from './helpers'

const push = vi.fn()
vi.mock('vue-router', () => ({ useRouter: () => ({ push }), useRoute: () => ({ query: {} }) }))

function input(wrapper: ReturnType<typeof mount>, id: string) {
  const el = wrapper.find(`[data-testid="${id}"]`)
  return el.element.tagName === 'INPUT' ? el : el.find('input')
}

function setup(gpuTypes: 'ok' | 'missing') {
  const { fetch, calls } = fakeFetch((c) => {
    if (c.url.startsWith('/api/v1/workspaces')) {
      return json(200, { items: [{ id: 'ws1', name: 'alice', slug: 'alice', is_personal: true, created_at: '', role: 'owner' }], total: 1 })
    }
    if (c.url.startsWith('/api/v1/gpu-types')) {
      return gpuTypes === 'ok'
        ? json(200, { items: [{ model: 'A100', total: 4, free: 1, memory_mib: 81920 }, { model: 'T4', total: 2, free: 2, memory_mib: 15360 }] })
        : json(404, { error: { code: 'not_found', message: 'no such resource', details: {} } })
    }
    if (c.url === '/api/v1/environments' && c.method === 'POST') {
      return json(202, { id: 'e1', name: (c.body as any).name, status: 'queued', queue_position: 3, workspace_id: 'ws1', created_at: '' })
    }
    return json(404, { error: { code: 'not_found', message: 'no such resource' } })
  })
  configureClient({ fetch, auth: null, notify: () => {} })
  const wrapper = mount(EnvironmentCreateView, { global: { plugins: [createPinia(), makeI18n('en'), ElementPlus] } })
  return { wrapper, calls }
}

describe('create environment form', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    push.mockReset()
  })

  it('shows GPU model cards with free counts and blocks an invalid name', async () => {
    const { wrapper, calls } = setup('ok')
    await flushPromises()
    const cards = wrapper.find('[data-testid="gpu-cards"]').text()
    expect(cards).toContain('A100')
    expect(cards).toContain('1 / 4 free')
    expect(cards).toContain('CPU only')
    await input(wrapper, 'create-name').setValue('bad name!')
    await wrapper.find('[data-testid="create-submit"]').trigger('click')
    await flushPromises()
    const item = wrapper.findAll('.el-form-item').find((w) => w.find('[data-testid="create-name"]').exists())!
    expect(item.classes()).toContain('is-error')
    expect(calls.some((c) => c.method === 'POST')).toBe(false)
  })

  it('submits a valid form, warns about the queue and opens the new environment', async () => {
    const { wrapper, calls } = setup('ok')
    await flushPromises()
    await wrapper.find('[data-testid="gpu-card-A100"]').trigger('click')
    await input(wrapper, 'create-name').setValue('train-1')
    await input(wrapper, 'create-gpu-count').setValue('2')
    expect((input(wrapper, 'create-disk').element as HTMLInputElement).value).toBe('50')
    await input(wrapper, 'create-disk').setValue('200')
    await flushPromises()
    expect(wrapper.find('.summary').text()).toContain('200 GiB')
    expect(wrapper.text()).toContain('Only 1 free: the environment will wait in the queue.')
    await wrapper.find('[data-testid="create-submit"]').trigger('click')
    await flushPromises()
    const post = calls.find((c) => c.method === 'POST')
    expect(post?.body).toMatchObject({ name: 'train-1', workspace_id: 'ws1', gpu_model: 'A100', gpu_count: 2, disk_gib: 200 })
    expect(push).toHaveBeenCalledWith({ name: 'environment', params: { id: 'e1' } })
  })

  it('sends the advanced settings: idle stop with its threshold, shared, variables checked per row', async () => {
    const { wrapper, calls } = setup('ok')
    await flushPromises()
    await wrapper.find('[data-testid="gpu-card-T4"]').trigger('click')
    await wrapper.find('[data-testid="create-advanced"] .el-collapse-item__header').trigger('click')
    expect(wrapper.find('[data-testid="create-idle-threshold"]').exists()).toBe(false)
    ;(wrapper.vm as any).$.setupState.idleStop = 30
    await flushPromises()
    expect((input(wrapper, 'create-idle-threshold').element as HTMLInputElement).value).toBe('5')
    await input(wrapper, 'create-idle-threshold').setValue('10')
    await wrapper.find('[data-testid="create-shared"]').trigger('click')
    await wrapper.find('[data-testid="create-env-add"]').trigger('click')
    await wrapper.find('[data-testid="create-env-add"]').trigger('click')
    await input(wrapper, 'create-env-key-0').setValue('HF_HOME')
    await input(wrapper, 'create-env-value-0').setValue('/root/workspace/hf')
    await input(wrapper, 'create-env-key-1').setValue('1BAD')
    await wrapper.find('[data-testid="create-submit"]').trigger('click')
    await flushPromises()
    expect(calls.some((c) => c.method === 'POST')).toBe(false)
    const row = (i: number) => wrapper.findAll('.el-form-item').find((w) => w.find(`[data-testid="create-env-key-${i}"]`).exists() && !w.find('.env-rows').exists())!
    expect(row(1).classes()).toContain('is-error')
    await new Promise((r) => setTimeout(r, 150)) // the form item shows its message after a short debounce
    expect(row(1).text()).toContain('not starting with a digit')
    expect(row(0).classes()).not.toContain('is-error')
    await input(wrapper, 'create-env-key-1').setValue('HF_HOME')
    await flushPromises()
    await new Promise((r) => setTimeout(r, 150))
    expect(row(1).text()).toContain('“HF_HOME” is already set above')
    await input(wrapper, 'create-env-key-1').setValue('LD_PRELOAD')
    await flushPromises()
    await new Promise((r) => setTimeout(r, 150))
    expect(row(1).text()).toContain('“LD_PRELOAD” is reserved by the platform (LD_*)')
    await wrapper.find('[data-testid="create-env-remove-1"]').trigger('click')
    await flushPromises()
    expect(wrapper.find('[data-testid="create-env-key-1"]').exists()).toBe(false)
    // A secret row: its value is typed into a password field and sent as secret_env.
    await wrapper.find('[data-testid="create-env-add"]').trigger('click')
    await input(wrapper, 'create-env-key-1').setValue('HF_TOKEN')
    await wrapper.find('[data-testid="create-env-secret-1"] input').setValue(true)
    await flushPromises()
    expect((input(wrapper, 'create-env-value-1').element as HTMLInputElement).type).toBe('password')
    await input(wrapper, 'create-env-value-1').setValue('hf_secret')
    const summary = wrapper.find('.summary').text()
    expect(summary).toContain('after 30 min idle (GPU < 10%)')
    expect(summary).toContain('With workspace members')
    expect(summary).toContain('HF_HOME')
    await wrapper.find('[data-testid="create-submit"]').trigger('click')
    await flushPromises()
    const post = calls.find((c) => c.method === 'POST')
    expect(post?.body).toMatchObject({
      gpu_model: 'T4', gpu_count: 1, idle_stop_minutes: 30, idle_gpu_threshold: 10, shared: true, env: { HF_HOME: '/root/workspace/hf' },
      secret_env: { HF_TOKEN: 'hf_secret' },
    })
  })

  it('disables idle stop without GPUs and sends nothing advanced by default', async () => {
    const { wrapper, calls } = setup('ok')
    await flushPromises()
    await wrapper.find('[data-testid="gpu-card-none"]').trigger('click')
    await flushPromises()
    expect(wrapper.find('[data-testid="create-idle-stop"] .el-select__wrapper').classes()).toContain('is-disabled')
    expect(wrapper.text()).toContain('Needs GPUs')
    await wrapper.find('[data-testid="create-submit"]').trigger('click')
    await flushPromises()
    const body = calls.find((c) => c.method === 'POST')?.body as Record<string, unknown>
    expect(body.gpu_count).toBe(0)
    for (const k of ['idle_stop_minutes', 'idle_gpu_threshold', 'shared', 'env', 'secret_env']) expect(body).not.toHaveProperty(k)
  })

  it('still works (CPU only) when the GPU inventory API is not there yet', async () => {
    const { wrapper } = setup('missing')
    await flushPromises()
    expect(wrapper.text()).toContain('GPU inventory is not available yet.')
  })
})
