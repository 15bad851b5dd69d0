import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { Sha256 } from '../src/utils/sha256'

describe('incremental sha256 (uploads hash files in the page)', () => {
  it('matches node:crypto for every padding edge, fed in odd chunks', () => {
    for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 100_000]) {
      const data = new Uint8Array(n).map((_, i) => (i * 7 + 3) & 255)
      const hash = new Sha256()
      for (let i = 0; i < n; i += 37) hash.update(data.subarray(i, i + 37))
      expect(hash.hex()).toBe(createHash('sha256').update(data).digest('hex'))
    }
  })
})
