export function wsUrl(path: string, loc: Pick<Location, 'protocol' | 'host'> = window.location): string {
  if (/^wss?:\/\//.test(path)) return path
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${loc.host}${path.startsWith('/') ? '' : '/'}${path}`
}

export function formatTime(iso: string | null | undefined, locale = 'en'): string {
  if (!iso) return '—'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return d.toLocaleString(locale === 'zh-CN' ? 'zh-CN' : 'en-GB', { hour12: false })
}

/** "12 s ago", "3 min ago" — in the given locale. */
export function relativeTime(iso: string | null | undefined, locale = 'en', now = Date.now()): string {
  if (!iso) return '—'
  const t = new Date(iso).getTime()
  if (Number.isNaN(t)) return iso
  const secs = Math.round((t - now) / 1000)
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: 'auto' })
  const abs = Math.abs(secs)
  if (abs < 60) return rtf.format(secs, 'second')
  if (abs < 3600) return rtf.format(Math.round(secs / 60), 'minute')
  if (abs < 86400) return rtf.format(Math.round(secs / 3600), 'hour')
  return rtf.format(Math.round(secs / 86400), 'day')
}

export function formatMib(mib: number): string {
  return mib >= 1024 ? `${Math.round(mib / 1024)}` : `${(mib / 1024).toFixed(1)}`
}

/** Values of variables whose name looks secret (TOKEN, SECRET, PASSWORD, KEY) are shown as dots. */
export const SECRET_ENV_RE = /TOKEN|SECRET|PASSWORD|KEY/i
export function maskEnvValue(key: string, value: string): string {
  return SECRET_ENV_RE.test(key) ? '••••' : value
}

/** Bytes as B / KiB / MiB / GiB / TiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`
}
