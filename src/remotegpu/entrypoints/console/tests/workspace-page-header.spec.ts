import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import ElementPlus from 'element-plus'
import { createPinia } from 'pinia'
import { makeI18n } from '../src/i18n'
import WorkspacePageHeader from '../src/components/WorkspacePageHeader.vue'

function mountHeader(props: { title: string; hint?: string; workspaceId?: string; pickerTestId?: string }) {
  return mount(WorkspacePageHeader, {
    props,
    slots: { default: '<button data-testid="tool">New</button>' },
    global: { plugins: [makeI18n('en'), ElementPlus, createPinia()] },
  })
}

describe('WorkspacePageHeader', () => {
  it('shows the title, the page\'s toolbar and its hint; no workspace picker unless bound', () => {
    const wrapper = mountHeader({ title: 'Support tickets', hint: 'Ask the platform team' })
    expect(wrapper.find('h1').text()).toBe('Support tickets')
    expect(wrapper.find('[data-testid="tool"]').exists()).toBe(true)
    expect(wrapper.text()).toContain('Ask the platform team')
    expect(wrapper.find('[data-testid="page-workspace"]').exists()).toBe(false)
  })

  it('shows a workspace picker when the page binds workspace-id', () => {
    const wrapper = mountHeader({ title: 'Jobs', workspaceId: 'ws-1', pickerTestId: 'jobs-workspace' })
    expect(wrapper.find('[data-testid="jobs-workspace"]').exists()).toBe(true)
    expect(wrapper.find('.muted').exists()).toBe(false)
  })
})
