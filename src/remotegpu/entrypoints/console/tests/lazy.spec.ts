import { describe, expect, it } from 'vitest'
import { retryingImport } from '../src/utils/lazy'

describe('retryingImport', () => {
  it('fetches a chunk again after a failed fetch', async () => {
    let calls = 0
    const load = retryingImport(async () => {
      calls++
      if (calls < 3) throw new TypeError('Failed to fetch dynamically imported module')
      return 'module'
    }, 3, 1)
    expect(await load()).toBe('module')
    expect(calls).toBe(3)
  })

  it('gives up with the last error after the last attempt', async () => {
    let calls = 0
    const load = retryingImport(async () => {
      calls++
      throw new TypeError(`failed ${calls}`)
    }, 2, 1)
    await expect(load()).rejects.toThrow('failed 2')
    expect(calls).toBe(2)
  })
})
