import { createI18n } from 'vue-i18n'
import en from './locales/en'
import zhCN from './locales/zh-CN'

export const LOCALE_KEY = 'rgpu.locale'
export const LOCALES = [
  { value: 'zh-CN', label: '简体中文' },
  { value: 'en', label: 'English' },
] as const
export type Locale = (typeof LOCALES)[number]['value']

export function initialLocale(): Locale {
  try {
    const saved = localStorage.getItem(LOCALE_KEY)
    if (saved === 'en' || saved === 'zh-CN') return saved
  } catch {
    /* storage disabled */
  }
  const nav = typeof navigator !== 'undefined' ? navigator.language || '' : ''
  return nav.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en'
}

export function makeI18n(locale: Locale = initialLocale()) {
  return createI18n({
    legacy: false,
    locale,
    fallbackLocale: 'en',
    messages: { en, 'zh-CN': zhCN },
    missingWarn: false,
    fallbackWarn: false,
  })
}

export const i18n = makeI18n()

export function setLocale(locale: Locale, target = i18n): void {
  target.global.locale.value = locale
  try {
    localStorage.setItem(LOCALE_KEY, locale)
  } catch {
    /* storage disabled */
  }
  if (typeof document !== 'undefined') document.documentElement.lang = locale
}

/** The client's translate hook: null when the key does not exist (so the server message is used). */
export function translate(key: string, params?: Record<string, unknown>, target = i18n): string | null {
  const g = target.global
  if (!g.te(key) && !g.te(key, 'en')) return null
  return g.t(key, (params ?? {}) as Record<string, unknown>)
}
