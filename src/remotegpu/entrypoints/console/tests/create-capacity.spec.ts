import { beforeEach, describe, expect, it, vi } from 'vitest'
import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import ElementPlus from 'element-plus'
import { configureClient } from '../src/api/client'
import { makeI18n } from '../src/i18n'
import EnvironmentCreateView from '../src/views/EnvironmentCreateView.vue'
import { fittingDefaults, verdictOf } from '../src/utils/capacity'
import { fakeFetch, json } from './helpers'

vi.mock('vue-router', () => ({ useRouter: () => ({ push: vi.fn() }), useRoute: () => ({ query: {} }) }))

function input(wrapper: ReturnType<typeof mount>, id: string) {
  const el = wrapper.find(`[data-testid="${id}"]`)
  return el.element.tagName === 'INPUT' ? el : el.find('input')
}

/** A fleet of one 2-core, 8 GiB host with 4 fake A100s; ``busyCores`` of its cores are taken. */
function setup(busyCores = 0) {
  const { fetch, calls } = fakeFetch((c) => {
    const url = new URL(c.url, 'http://x')
    if (url.pathname.startsWith('/api/v1/workspaces')) {
      return json(200, { items: [{ id: 'ws1', name: 'alice', slug: 'alice', is_personal: true, created_at: '', role: 'owner' }], total: 1 })
    }
    if (url.pathname === '/api/v1/gpu-types') {
      const cpu = Number(url.searchParams.get('cpu_cores') ?? 1)
      const memory = Number(url.searchParams.get('memory_gib') ?? 1)
      const freeCpu = 2 - busyCores
      return json(200, { items: [{
        model: 'A100', total: 4, free: 4, memory_mib: 81920,
        startable_now: cpu <= freeCpu && memory <= 8, cpu_cores_free: freeCpu, memory_gib_free: 8,
        max_cpu_cores: 2, max_memory_gib: 8, ever_fits: cpu <= 2 && memory <= 8,
      }], total: 1 })
    }
    return json(404, { error: { code: 'not_found', message: 'no such resource' } })
  })
  configureClient({ fetch, auth: null, notify: () => {} })
  const wrapper = mount(EnvironmentCreateView, { global: { plugins: [createPinia(), makeI18n('en'), ElementPlus] } })
  return { wrapper, calls }
}

const settle = async () => {
  await flushPromises()
  await new Promise((r) => setTimeout(r, 350)) // the form asks again 250 ms after a change
  await flushPromises()
}

describe('create form capacity', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('starts from defaults that fit the fleet, asked with the request being composed', async () => {
    const { wrapper, calls } = setup()
    await settle()
    expect((input(wrapper, 'create-cpu').element as HTMLInputElement).value).toBe('2')
    expect((input(wrapper, 'create-memory').element as HTMLInputElement).value).toBe('8')
    expect(wrapper.find('[data-testid="gpu-verdict-A100"]').text()).toBe('Starts now')
    const asked = calls.filter((c) => c.url.startsWith('/api/v1/gpu-types')).map((c) => new URL(c.url, 'http://x').searchParams)
    expect(asked[0].get('cpu_cores')).toBe('4') // the form's initial request
    expect(asked.at(-1)!.get('cpu_cores')).toBe('2')
    expect(asked.at(-1)!.get('gpu_count')).toBe('1')
    expect(wrapper.find('[data-testid="create-never-fits"]').exists()).toBe(false)
  })

  it('refuses up front a request no host can hold', async () => {
    const { wrapper } = setup()
    await settle()
    await input(wrapper, 'create-cpu').setValue('4')
    await settle()
    const alert = wrapper.find('[data-testid="create-never-fits"]')
    expect(alert.text()).toContain('No host can ever hold 4 vCPU, 8 GiB with 1 × A100')
    expect(alert.text()).toContain('2 vCPU and 8 GiB')
    expect(wrapper.find('[data-testid="create-submit"]').attributes('disabled')).toBeDefined()
  })

  it('says what a request would wait for when the hosts with its GPUs are busy', async () => {
    const { wrapper } = setup(2)
    await settle()
    expect(wrapper.find('[data-testid="gpu-verdict-A100"]').text()).toContain('Would wait: 0 vCPU')
    expect(wrapper.find('[data-testid="create-will-wait"]').text()).toContain('most free on a host with these GPUs: 0 vCPU')
  })

  it('judges answers of older servers as unknown', () => {
    expect(verdictOf({ model: 'A', total: 1, free: 1, memory_mib: 1 })).toEqual({ kind: 'unknown' })
    expect(fittingDefaults([], { gpu_count: 1, cpu_cores: 4, memory_gib: 16 })).toEqual({ model: null, cpu_cores: 4, memory_gib: 16 })
  })
})
