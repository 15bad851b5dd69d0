import { beforeEach, describe, expect, it } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import ElementPlus from 'element-plus'
import { configureClient } from '../src/api/client'
import { makeI18n } from '../src/i18n'
import HostsView from '../src/views/admin/HostsView.vue'
import { fakeFetch, json, type Call } from './helpers'

const HOST = {
  id: 'h1', name: 'gpu-1', status: 'ready', schedulable: 'ready', address: '203.0.113.5', private_address: '', labels: {},
  cpu_cores: 2, memory_gib: 8, disk_gib: 100, runtime: 'docker', runtime_healthy: true, fake_gpus: true,
  last_heartbeat_at: '2026-03-01T12:00:00Z', environments: 0, gpus: [],
  cpu_overcommit: 1.0, memory_overcommit: 1.0, schedulable_cpu_cores: 2, schedulable_memory_gib: 8,
}

function setup(locale: 'en' | 'zh-CN' = 'en') {
  const host: any = { ...HOST }
  const { fetch, calls } = fakeFetch((c: Call) => {
    const url = new URL(c.url, 'http://x')
    if (url.pathname === '/api/v1/hosts' && c.method === 'GET') return json(200, { items: [host], total: 1 })
    if (url.pathname === '/api/v1/hosts/h1' && c.method === 'PATCH') {
      const b = c.body as any
      host.cpu_overcommit = b.cpu_overcommit
      host.memory_overcommit = b.memory_overcommit
      host.schedulable_cpu_cores = Math.floor(host.cpu_cores * b.cpu_overcommit)
      host.schedulable_memory_gib = Math.floor(host.memory_gib * b.memory_overcommit)
      return json(200, host)
    }
    return json(404, { error: { code: 'not_found', message: 'no such resource' } })
  })
  configureClient({ fetch, auth: null, notify: () => {} })
  const wrapper = mount(HostsView, {
    attachTo: document.body,
    global: { plugins: [createPinia(), makeI18n(locale), ElementPlus], stubs: { Refresh: true, Plus: true } },
  })
  return { wrapper, calls }
}

describe('admin hosts overcommit', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('shows the ratios and what the host schedules, and sets them', async () => {
    const { wrapper, calls } = setup()
    await flushPromises()
    expect(wrapper.find('[data-testid="host-overcommit-gpu-1"]').text()).toContain('overcommit CPU ×1.0, RAM ×1.0')
    expect(wrapper.find('[data-testid="host-overcommit-gpu-1"]').text()).toContain('schedules 2 vCPU / 8 GiB')
    await wrapper.find('[data-testid="host-overcommit-edit-gpu-1"]').trigger('click')
    await flushPromises()
    const cpu = document.querySelector('[data-testid="host-cpu-overcommit"] input') as HTMLInputElement
    cpu.value = '2.5'
    cpu.dispatchEvent(new Event('input'))
    cpu.dispatchEvent(new Event('change'))
    await flushPromises()
    ;(document.querySelector('[data-testid="host-overcommit-save"]') as HTMLElement).click()
    await flushPromises()
    const patch = calls.find((c) => c.method === 'PATCH')!
    expect(patch.url).toBe('/api/v1/hosts/h1')
    expect(patch.body).toEqual({ cpu_overcommit: 2.5, memory_overcommit: 1 })
    expect(wrapper.find('[data-testid="host-overcommit-gpu-1"]').text()).toContain('schedules 5 vCPU / 8 GiB')
    wrapper.unmount()
  })

  it('speaks Chinese too', async () => {
    const { wrapper } = setup('zh-CN')
    await flushPromises()
    expect(wrapper.find('[data-testid="host-overcommit-gpu-1"]').text()).toContain('超分 CPU ×1.0')
    wrapper.unmount()
  })
})
