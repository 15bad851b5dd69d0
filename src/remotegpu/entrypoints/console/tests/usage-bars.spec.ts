import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import ElementPlus from 'element-plus'
import { makeI18n } from '../src/i18n'
import UsageBars from '../src/components/UsageBars.vue'

const quota = {
  max_gpus: null, max_environments: null, max_cpu_cores: null, max_memory_gib: null, max_storage_gib: 200,
  usage: { gpus: 0, environments: 2, cpu_cores: 0, memory_gib: 0, storage_gib: 150 },
}

describe('workspace usage bars', () => {
  it('shows storage used by environment disks against its limit', () => {
    const wrapper = mount(UsageBars, { props: { quota }, global: { plugins: [makeI18n('en'), ElementPlus] } })
    const row = wrapper.find('[data-testid="usage-storage_gib"]')
    expect(row.text()).toContain('Storage (GiB)')
    expect(row.text()).toContain('150 / 200')
    expect(wrapper.find('[data-testid="usage-gpus"]').text()).toContain('0 / Unlimited')
  })
})
