import { describe, expect, it } from 'vitest'
import { delayMs, parseCast, parseSize } from '../src/utils/asciicast'

describe('asciicast v2', () => {
  it('reads the header and the events, in order, and the duration', () => {
    const cast = parseCast('{"version": 2, "width": 100, "height": 30}\n[0.5, "o", "$ ls\\r\\n"]\n[1.25, "r", "120x40"]\n[2.0, "o", "done"]\n')
    expect(cast.header).toMatchObject({ width: 100, height: 30 })
    expect(cast.events.map((e) => e[1])).toEqual(['o', 'r', 'o'])
    expect(cast.events[0][2]).toBe('$ ls\r\n')
    expect(cast.duration).toBe(2)
  })
  it('refuses other versions and empty files', () => {
    expect(() => parseCast('{"version": 1}\n')).toThrow()
    expect(() => parseCast('')).toThrow()
  })
  it('parses sizes and shortens long pauses', () => {
    expect(parseSize('80x24')).toEqual({ cols: 80, rows: 24 })
    expect(parseSize('0x24')).toBeNull()
    expect(parseSize('nonsense')).toBeNull()
    expect(delayMs(1, 1.5, 1)).toBe(500)
    expect(delayMs(1, 100, 1)).toBe(2000)
    expect(delayMs(1, 1.5, 2)).toBe(250)
    expect(delayMs(2, 1, 1)).toBe(0)
  })
})
