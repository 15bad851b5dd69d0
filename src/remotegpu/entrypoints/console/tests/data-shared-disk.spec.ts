import { describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia } from 'pinia'
import ElementPlus from 'element-plus'
import { configureClient } from '../src/api/client'
import { makeI18n } from '../src/i18n'
import DataView from '../src/views/DataView.vue'
import { fakeFetch, json } from './helpers'

vi.mock('vue-router', () => ({ useRouter: () => ({ push: vi.fn() }), useRoute: () => ({ query: {} }) }))

const workspace = (role: string) => ({ id: 'ws1', name: 'team', is_personal: true, role })

function serve(role: string) {
  let disk: { size_gib: number } | null = null
  return fakeFetch((c) => {
    if (c.url.startsWith('/api/v1/workspaces/ws1/shared-disk')) {
      if (c.method === 'PUT') disk = { size_gib: (c.body as { size_gib: number }).size_gib }
      if (c.method === 'DELETE') { disk = null; return new Response(null, { status: 204 }) }
      return json(200, { workspace_id: 'ws1', enabled: !!disk, size_gib: disk?.size_gib ?? null, mount_path: '/root/shared',
        per_host: true, updated_at: disk ? '2026-11-29T00:00:00Z' : null })
    }
    if (c.url.startsWith('/api/v1/workspaces')) return json(200, { items: [workspace(role)], total: 1 })
    if (c.url.startsWith('/api/v1/datasets')) return json(200, { items: [], total: 0 })
    return json(404, { error: { code: 'not_found', message: 'no such resource' } })
  })
}

describe('datasets page: the workspace shared disk', () => {
  it('lets a workspace admin turn it on with a size and off again', async () => {
    const { fetch, calls } = serve('owner')
    configureClient({ fetch, auth: null, notify: () => {} })
    const wrapper = mount(DataView, { props: { kind: 'dataset' }, global: { plugins: [createPinia(), makeI18n('en'), ElementPlus], stubs: { RouterLink: true } } })
    await flushPromises()
    const card = wrapper.find('[data-testid="shared-disk"]')
    expect(card.text()).toContain('/root/shared')
    expect(card.text()).toContain('does not follow an environment to another host')
    expect(wrapper.find('[data-testid="shared-disk-state"]').text()).toBe('Off')
    await wrapper.find('[data-testid="shared-disk-size"] input').setValue('20')
    await wrapper.find('[data-testid="shared-disk-save"]').trigger('click')
    await flushPromises()
    expect(calls.find((c) => c.method === 'PUT')?.body).toEqual({ size_gib: 20 })
    expect(wrapper.find('[data-testid="shared-disk-state"]').text()).toBe('20 GiB')
    await wrapper.find('[data-testid="shared-disk-off"]').trigger('click')
    await flushPromises()
    expect(wrapper.find('[data-testid="shared-disk-state"]').text()).toBe('Off')
    wrapper.unmount()
  }, 30_000)  // Element Plus mounts slowly on a loaded machine

  it('shows it read-only to members', async () => {
    const { fetch } = serve('member')
    configureClient({ fetch, auth: null, notify: () => {} })
    const wrapper = mount(DataView, { props: { kind: 'dataset' }, global: { plugins: [createPinia(), makeI18n('zh-CN'), ElementPlus], stubs: { RouterLink: true } } })
    await flushPromises()
    expect(wrapper.find('[data-testid="shared-disk"]').text()).toContain('工作空间共享盘')
    expect(wrapper.find('[data-testid="shared-disk-save"]').exists()).toBe(false)
    wrapper.unmount()
  }, 30_000)
})
