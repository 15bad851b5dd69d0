/**
 * asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line, then
 * one `[seconds, kind, data]` line per event — "o" output, "r" a resize ("COLSxROWS").
 * The SSH gateway records terminal sessions in this format (README "SSH gateway").
 */

export interface CastHeader {
  version: number
  width: number
  height: number
  timestamp?: number
  env?: Record<string, string>
}

export type CastEvent = [number, string, string]

export interface Cast {
  header: CastHeader
  events: CastEvent[]
  /** Seconds from the first to the last event. */
  duration: number
}

export function parseCast(text: string): Cast {
  const lines = text.split('\n').filter((l) => l.trim() !== '')
  if (!lines.length) throw new Error('empty recording')
  const header = JSON.parse(lines[0]) as CastHeader
  if (header.version !== 2) throw new Error(`asciicast version ${header.version} is not supported`)
  const events: CastEvent[] = []
  for (const line of lines.slice(1)) {
    const ev = JSON.parse(line) as unknown
    if (Array.isArray(ev) && ev.length >= 3 && typeof ev[0] === 'number' && typeof ev[2] === 'string') {
      events.push([ev[0], String(ev[1]), ev[2]])
    }
  }
  const duration = events.length ? events[events.length - 1][0] : 0
  return { header, events, duration }
}

/** A resize event's size, or null when malformed. */
export function parseSize(data: string): { cols: number; rows: number } | null {
  const m = /^(\d+)x(\d+)$/.exec(data)
  if (!m) return null
  const cols = Number(m[1])
  const rows = Number(m[2])
  return cols > 0 && rows > 0 ? { cols, rows } : null
}

/** How long to wait before an event, in ms, at `speed`, with pauses cut to `idleLimit` seconds. */
export function delayMs(from: number, to: number, speed: number, idleLimit = 2): number {
  return (Math.min(Math.max(0, to - from), idleLimit) * 1000) / Math.max(speed, 0.01)
}
