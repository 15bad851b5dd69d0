import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import ElementPlus, { ElMessageBox } from 'element-plus'
import { configureClient } from '../src/api/client'
import { makeI18n } from '../src/i18n'
import HostsView from '../src/views/admin/HostsView.vue'
import CopyBlock from '../src/components/CopyBlock.vue'
import { fakeFetch, json, type Call } from './helpers'

const BASE = {
  labels: {}, cpu_cores: 32, memory_gib: 256, disk_gib: 1000, runtime: 'docker', runtime_healthy: true,
  fake_gpus: false, last_heartbeat_at: '2026-03-01T12:00:00Z', environments: 0,
  gpus: [{ index: 0, uuid: 'GPU-1', model: 'H100', memory_mib: 81559, healthy: true, allocated: false, utilization: null, numa_node: 0, nvlink_group: null }],
}
const HOSTS = [
  { ...BASE, id: 'h-live', name: 'gpu-live', status: 'ready', schedulable: 'ready', address: '203.0.113.5', private_address: '10.0.0.5',
    environments: 2,
    quarantined: [{ env_id: 'env-from-before', host_id: 'h-before', since: '2026-03-01T12:00:00Z' }] },
  { ...BASE, id: 'h-off-cordoned', name: 'gpu-off-cordoned', status: 'offline', schedulable: 'cordoned', address: '203.0.113.6', private_address: '' },
  { ...BASE, id: 'h-off-ready', name: 'gpu-off-ready', status: 'offline', schedulable: 'ready', address: '203.0.113.7', private_address: '10.0.0.7' },
  { ...BASE, id: 'h-off-draining', name: 'gpu-off-draining', status: 'offline', schedulable: 'draining', address: '203.0.113.8', private_address: '' },
  {
    ...BASE, id: 'h-thief', name: 'gpu-thief', status: 'ready', schedulable: 'ready', address: '203.0.113.9', private_address: '10.0.0.9',
    conditions: [{ code: 'gpu_uuid_conflict', message: 'the agent reports GPU GPU-1, which host gpu-live owns', details: { uuid: 'GPU-1', owner_host_id: 'h-live', owner_host_name: 'gpu-live' } }],
  },
]

const mounted: ReturnType<typeof mount>[] = []

function setup(locale: 'en' | 'zh-CN' = 'en') {
  const hosts: any[] = HOSTS.map((h) => ({ ...h }))
  const { fetch, calls } = fakeFetch((c: Call) => {
    const url = new URL(c.url, 'http://x')
    if (url.pathname === '/api/v1/hosts' && c.method === 'GET') return json(200, { items: hosts, total: hosts.length })
    const token = url.pathname.match(/^\/api\/v1\/hosts\/([^/]+)\/token$/)
    if (token && c.method === 'POST') return json(200, { host_id: token[1], join_token: 'rgj_NEW-TOKEN' })
    const one = url.pathname.match(/^\/api\/v1\/hosts\/([^/]+)$/)
    if (one && c.method === 'DELETE') {
      hosts.splice(hosts.findIndex((x) => x.id === one[1]), 1)
      return new Response(null, { status: 204 })
    }
    const m = url.pathname.match(/^\/api\/v1\/hosts\/([^/]+)\/(cordon|uncordon|drain)$/)
    if (m && c.method === 'POST') {
      const h = hosts.find((x) => x.id === m[1])!
      h.schedulable = { cordon: 'cordoned', uncordon: 'ready', drain: 'draining' }[m[2]]!
      if (h.status !== 'offline') h.status = h.schedulable // an offline host stays offline
      return json(200, h)
    }
    return json(404, { error: { code: 'not_found', message: 'no such resource' } })
  })
  configureClient({ fetch, auth: null, notify: () => {} })
  const wrapper = mount(HostsView, { global: { plugins: [createPinia(), makeI18n(locale), ElementPlus], stubs: { Refresh: true, Plus: true } } })
  mounted.push(wrapper)
  return { wrapper, calls }
}

const byTestId = (wrapper: ReturnType<typeof mount>, id: string) => wrapper.find(`[data-testid="${id}"]`)

describe('admin hosts page', () => {
  beforeEach(() => setActivePinia(createPinia()))
  afterEach(() => {
    mounted.splice(0).forEach((w) => w.unmount()) // stops the page's refresh timer
    vi.restoreAllMocks()
  })

  it('shows an offline host that is cordoned as both offline and cordoned', async () => {
    const { wrapper } = setup()
    await flushPromises()
    const offCordoned = byTestId(wrapper, 'host-status-gpu-off-cordoned')
    expect(offCordoned.text()).toContain('Offline')
    expect(offCordoned.find('[data-testid="host-schedulable"]').text()).toBe('Cordoned')
    expect(byTestId(wrapper, 'host-status-gpu-off-draining').text()).toContain('Draining')
    // A ready offline host shows only "Offline"; a live host shows only its status.
    expect(byTestId(wrapper, 'host-status-gpu-off-ready').find('[data-testid="host-schedulable"]').exists()).toBe(false)
    expect(byTestId(wrapper, 'host-status-gpu-off-ready').text()).toBe('Offline')
    expect(byTestId(wrapper, 'host-status-gpu-live').text()).toBe('Ready')
  })

  it('offers cordon/uncordon/drain on offline hosts according to schedulable', async () => {
    const { wrapper } = setup()
    await flushPromises()
    // offline + cordoned: uncordon offered, drain still possible
    expect(byTestId(wrapper, 'host-uncordon-gpu-off-cordoned').exists()).toBe(true)
    expect(byTestId(wrapper, 'host-cordon-gpu-off-cordoned').exists()).toBe(false)
    expect(byTestId(wrapper, 'host-uncordon-gpu-off-cordoned').attributes('disabled')).toBeUndefined()
    expect(byTestId(wrapper, 'host-drain-gpu-off-cordoned').attributes('disabled')).toBeUndefined()
    // offline + ready: cordon offered, enabled
    expect(byTestId(wrapper, 'host-cordon-gpu-off-ready').exists()).toBe(true)
    expect(byTestId(wrapper, 'host-cordon-gpu-off-ready').attributes('disabled')).toBeUndefined()
    expect(byTestId(wrapper, 'host-drain-gpu-off-ready').attributes('disabled')).toBeUndefined()
    // offline + draining: uncordon offered, drain already chosen
    expect(byTestId(wrapper, 'host-uncordon-gpu-off-draining').exists()).toBe(true)
    expect(byTestId(wrapper, 'host-drain-gpu-off-draining').attributes('disabled')).toBeDefined()
  })

  it('cordons an offline host and then offers uncordon', async () => {
    const confirm = vi.spyOn(ElMessageBox, 'confirm').mockResolvedValue('confirm' as never)
    const { wrapper, calls } = setup()
    await flushPromises()
    await byTestId(wrapper, 'host-cordon-gpu-off-ready').trigger('click')
    await flushPromises()
    expect(String(confirm.mock.calls[0][0])).toContain('agent reports')
    const post = calls.find((c) => c.method === 'POST')
    expect(post?.url).toBe('/api/v1/hosts/h-off-ready/cordon')
    expect(byTestId(wrapper, 'host-uncordon-gpu-off-ready').exists()).toBe(true)
    const status = byTestId(wrapper, 'host-status-gpu-off-ready')
    expect(status.text()).toContain('Offline')
    expect(status.text()).toContain('Cordoned')
  })

  it('shows the private address next to the public one', async () => {
    const { wrapper } = setup()
    await flushPromises()
    const rows = wrapper.findAll('[data-testid="hosts-table"] .el-table__row')
    await rows[0].find('.el-table__expand-icon').trigger('click')
    await flushPromises()
    const addr = byTestId(wrapper, 'host-addresses-gpu-live')
    expect(addr.exists()).toBe(true)
    expect(addr.text()).toContain('Public address')
    expect(addr.find('[data-testid="host-public-address"]').text()).toBe('203.0.113.5')
    expect(addr.find('[data-testid="host-private-address"]').text()).toBe('10.0.0.5')
    // the address column shows it too
    expect(wrapper.find('[data-testid="hosts-table"]').text()).toContain('10.0.0.5')
  })

  it('lists what the agent holds in quarantine, and nothing for a host without any', async () => {
    const { wrapper } = setup()
    await flushPromises()
    const rows = wrapper.findAll('[data-testid="hosts-table"] .el-table__row')
    await rows[0].find('.el-table__expand-icon').trigger('click')
    await flushPromises()
    const box = byTestId(wrapper, 'host-quarantine-gpu-live')
    expect(box.exists()).toBe(true)
    expect(box.text()).toContain('Quarantined: 1')
    expect(box.text()).toContain('env-from-before')
    expect(box.text()).toContain('made for host h-before')
    expect(box.text()).toContain('never removed by the agent')
    await rows[1].find('.el-table__expand-icon').trigger('click')
    await flushPromises()
    expect(byTestId(wrapper, 'host-quarantine-gpu-off-cordoned').exists()).toBe(false)
  })

  it('says "not set" when a host has no private address', async () => {
    const { wrapper } = setup()
    await flushPromises()
    const rows = wrapper.findAll('[data-testid="hosts-table"] .el-table__row')
    await rows[1].find('.el-table__expand-icon').trigger('click')
    await flushPromises()
    expect(byTestId(wrapper, 'host-addresses-gpu-off-cordoned').find('[data-testid="host-private-address"]').text()).toBe('not set')
  })

  it('speaks Chinese', async () => {
    const { wrapper } = setup('zh-CN')
    await flushPromises()
    const status = byTestId(wrapper, 'host-status-gpu-off-cordoned').text()
    expect(status).toContain('离线')
    expect(status).toContain('已封锁')
    expect(byTestId(wrapper, 'host-uncordon-gpu-off-cordoned').text()).toBe('解除封锁')
  })

  it('shows a GPU conflict on the host whose agent reported it', async () => {
    const { wrapper } = setup()
    await flushPromises()
    const status = byTestId(wrapper, 'host-status-gpu-thief')
    expect(status.find('[data-testid="host-conflict"]').text()).toBe('GPU conflict × 1')
    expect(byTestId(wrapper, 'host-status-gpu-live').find('[data-testid="host-conflict"]').exists()).toBe(false)
    const rows = wrapper.findAll('[data-testid="hosts-table"] .el-table__row')
    await rows[4].find('.el-table__expand-icon').trigger('click')
    await flushPromises()
    expect(byTestId(wrapper, 'host-condition-gpu-thief').text()).toContain('which host gpu-live owns')
  })

  it('rotates a token and shows the new join command once', async () => {
    const confirm = vi.spyOn(ElMessageBox, 'confirm').mockResolvedValue('confirm' as never)
    const { wrapper, calls } = setup()
    await flushPromises()
    await byTestId(wrapper, 'host-rotate-gpu-live').trigger('click')
    await flushPromises()
    expect(String(confirm.mock.calls[0][0])).toContain('cut off at once')
    expect(calls.find((c) => c.method === 'POST')?.url).toBe('/api/v1/hosts/h-live/token')
    const blocks = wrapper.findAllComponents(CopyBlock).map((b) => b.props('text'))
    expect(blocks).toEqual([`remotegpu agent --server ${window.location.origin} --token rgj_NEW-TOKEN`])
  })

  it('removes an offline host plainly and an online busy one only with force', async () => {
    const confirm = vi.spyOn(ElMessageBox, 'confirm').mockResolvedValue('confirm' as never)
    const { wrapper, calls } = setup()
    await flushPromises()
    await byTestId(wrapper, 'host-remove-gpu-off-ready').trigger('click')
    await flushPromises()
    expect(calls.filter((c) => c.method === 'DELETE').map((c) => c.url)).toEqual(['/api/v1/hosts/h-off-ready'])
    expect(byTestId(wrapper, 'host-status-gpu-off-ready').exists()).toBe(false)
    await byTestId(wrapper, 'host-remove-gpu-live').trigger('click')
    await flushPromises()
    expect(String(confirm.mock.calls[1][0])).toContain('online with 2 environments')
    expect(calls.filter((c) => c.method === 'DELETE').map((c) => c.url)[1]).toBe('/api/v1/hosts/h-live?force=true')
  })

  it('removes nothing when the admin cancels', async () => {
    vi.spyOn(ElMessageBox, 'confirm').mockRejectedValue('cancel' as never)
    const { wrapper, calls } = setup()
    await flushPromises()
    await byTestId(wrapper, 'host-remove-gpu-live').trigger('click')
    await byTestId(wrapper, 'host-rotate-gpu-live').trigger('click')
    await flushPromises()
    expect(calls.filter((c) => c.method !== 'GET')).toEqual([])
  })

  it('names the new buttons in Chinese', async () => {
    const { wrapper } = setup('zh-CN')
    await flushPromises()
    expect(byTestId(wrapper, 'host-remove-gpu-live').text()).toBe('移除')
    expect(byTestId(wrapper, 'host-rotate-gpu-live').text()).toBe('轮换令牌')
    expect(byTestId(wrapper, 'host-status-gpu-thief').text()).toContain('GPU 冲突')
  })
})
