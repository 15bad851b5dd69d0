import { beforeEach, describe, expect, it } from 'vitest'
import { defineComponent, h } from 'vue'
import { mount } from '@vue/test-utils'
import { useI18n } from 'vue-i18n'
import en from '../src/i18n/locales/en'
import zhCN from '../src/i18n/locales/zh-CN'
import { LOCALE_KEY, initialLocale, makeI18n, setLocale } from '../src/i18n'

function keys(obj: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(obj).flatMap(([k, v]) => (v && typeof v === 'object' ? keys(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`]))
}

describe('i18n', () => {
  beforeEach(() => localStorage.clear())

  it('has the same keys in English and Chinese', () => {
    expect(keys(zhCN).sort()).toEqual(keys(en).sort())
  })

  it('switches the rendered text and remembers the choice', async () => {
    const i18n = makeI18n('zh-CN')
    const Comp = defineComponent({ setup: () => { const { t } = useI18n(); return () => h('span', t('nav.environments')) } })
    const wrapper = mount(Comp, { global: { plugins: [i18n] } })
    expect(wrapper.text()).toBe('我的实例')
    setLocale('en', i18n)
    await wrapper.vm.$nextTick()
    expect(wrapper.text()).toBe('Environments')
    expect(localStorage.getItem(LOCALE_KEY)).toBe('en')
    expect(initialLocale()).toBe('en')
    setLocale('zh-CN', i18n)
    await wrapper.vm.$nextTick()
    expect(wrapper.text()).toBe('我的实例')
    expect(initialLocale()).toBe('zh-CN')
  })

  it('ignores a garbage stored locale', () => {
    localStorage.setItem(LOCALE_KEY, 'klingon')
    expect(['en', 'zh-CN']).toContain(initialLocale())
  })
})
