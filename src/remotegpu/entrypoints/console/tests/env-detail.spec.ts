import { afterEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia } from 'pinia'
import ElementPlus from 'element-plus'
import { configureClient } from '../src/api/client'
import { makeI18n } from '../src/i18n'
import EnvironmentDetailView from '../src/views/EnvironmentDetailView.vue'
import { fakeFetch, json } from './helpers'

vi.mock('vue-router', () => ({ useRouter: () => ({ push: vi.fn() }), useRoute: () => ({ query: {} }) }))

const env = {
  id: 'e1', name: 'train-1', workspace_id: 'ws1', owner_id: 'u1', status: 'stopped', queue_position: null, gpu_count: 1,
  gpu_model: 'A100', host_id: null, gpus: [], cpu_cores: 4, memory_gib: 16, disk_gib: 50, image: 'base', created_at: '',
  status_message: null, idle_stop_minutes: 60, shared: true,
  env: { HF_HOME: '/data/hf', WANDB_API_KEY: 'abc123', HF_TOKEN: 'hf_x', DB_PASSWORD: 'pw', MY_SECRET: 's' },
}

describe('environment detail overview', () => {
  let wrapper: ReturnType<typeof mount> | null = null
  afterEach(() => wrapper?.unmount())

  it('shows idle stop, shared and the variables, with secret-looking values masked', async () => {
    const { fetch } = fakeFetch((c) => {
      if (c.url === '/api/v1/environments/e1') return json(200, env)
      if (c.url.startsWith('/api/v1/workspaces')) return json(200, { items: [], total: 0 })
      return json(404, { error: { code: 'not_found', message: 'no such resource' } })
    })
    configureClient({ fetch, auth: null, notify: () => {} })
    wrapper = mount(EnvironmentDetailView, {
      props: { id: 'e1' },
      global: { plugins: [createPinia(), makeI18n('en'), ElementPlus], stubs: { EnvActions: true, TerminalPanel: true } },
    })
    await flushPromises()
    expect(wrapper.find('[data-testid="env-idle-stop"]').text()).toBe('after 1 h idle')
    expect(wrapper.find('[data-testid="env-shared"]').text()).toBe('With workspace members')
    const vars = wrapper.find('[data-testid="env-vars"]').text()
    expect(vars).toContain('HF_HOME=/data/hf')
    for (const k of ['WANDB_API_KEY', 'HF_TOKEN', 'DB_PASSWORD', 'MY_SECRET']) expect(vars).toContain(`${k}=••••`)
    for (const v of ['abc123', 'hf_x', 'pw']) expect(vars).not.toContain(`=${v}`)
  })

  it('shows secret variables masked and, for viewers, plain ones without their values', async () => {
    const variables = [
      { name: 'HF_HOME', secret: false, value: null },
      { name: 'HF_TOKEN', secret: true, value: null },
    ]
    const { fetch } = fakeFetch((c) => {
      if (c.url === '/api/v1/environments/e1') return json(200, { ...env, env: {}, variables })
      if (c.url.startsWith('/api/v1/workspaces')) return json(200, { items: [], total: 0 })
      return json(404, { error: { code: 'not_found', message: 'no such resource' } })
    })
    configureClient({ fetch, auth: null, notify: () => {} })
    wrapper = mount(EnvironmentDetailView, {
      props: { id: 'e1' },
      global: { plugins: [createPinia(), makeI18n('en'), ElementPlus], stubs: { EnvActions: true, TerminalPanel: true } },
    })
    await flushPromises()
    const secret = wrapper.find('[data-testid="env-var-HF_TOKEN"]').text()
    expect(secret).toContain('HF_TOKEN=••••••')
    expect(secret).toContain('secret')
    expect(wrapper.find('[data-testid="env-var-HF_HOME"]').text()).toContain('HF_HOME=(hidden)')
  })
})

describe('environment detail: mount progress while starting', () => {
  it('shows the download of its mounts into the host cache with a percentage', async () => {
    const starting = { ...env, status: 'starting', status_message: 'mounting data /datasets/imagenet: 40% (400 of 1000 MiB)' }
    const { fetch } = fakeFetch((c) => {
      if (c.url === '/api/v1/environments/e1') return json(200, starting)
      if (c.url.startsWith('/api/v1/workspaces')) return json(200, { items: [], total: 0 })
      return json(404, { error: { code: 'not_found', message: 'no such resource' } })
    })
    configureClient({ fetch, auth: null, notify: () => {} })
    const wrapper = mount(EnvironmentDetailView, {
      props: { id: 'e1' },
      global: { plugins: [createPinia(), makeI18n('en'), ElementPlus], stubs: { EnvActions: true, TerminalPanel: true } },
    })
    await flushPromises()
    const box = wrapper.find('[data-testid="env-start-progress"]')
    expect(box.text()).toContain('Downloading /datasets/imagenet into the host cache')
    expect(wrapper.find('[data-testid="env-start-percent"]').text()).toContain('40%')
    wrapper.unmount()
  })
})
