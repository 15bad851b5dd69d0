/**
 * Environments with live status: one EventSource on /api/v1/events/stream (authenticated by
 * the session cookie) pushes every change. While the stream is unavailable (older server,
 * no cookie yet) the list is re-read every 15 seconds instead — never every second.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { ApiError, envApi, type Environment, type StreamEvent } from '../api'

export const STREAM_URL = '/api/v1/events/stream'
const FALLBACK_POLL_MS = 15_000
const RECONNECT_MS = 30_000

export type StreamState = 'off' | 'connecting' | 'live' | 'polling'

export const useEnvironmentsStore = defineStore('environments', () => {
  const byId = ref<Record<string, Environment>>({})
  /** null: not asked yet; false: the server has no environments API (404). */
  const available = ref<boolean | null>(null)
  const loading = ref(false)
  const stream = ref<StreamState>('off')
  const list = computed(() =>
    Object.values(byId.value).sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0)),
  )

  let source: EventSource | null = null
  let pollTimer: ReturnType<typeof setInterval> | null = null
  let reconnectTimer: ReturnType<typeof setTimeout> | null = null
  let subscribers = 0

  function upsert(env: Environment): void {
    if (env.status === 'deleted') {
      const next = { ...byId.value }
      delete next[env.id]
      byId.value = next
    } else {
      byId.value = { ...byId.value, [env.id]: { ...byId.value[env.id], ...env } }
    }
  }

  function remove(id: string): void {
    const next = { ...byId.value }
    delete next[id]
    byId.value = next
  }

  async function load(quiet = false): Promise<void> {
    loading.value = true
    try {
      const page = await envApi.list({ quiet: quiet ? true : [404] })
      const next: Record<string, Environment> = {}
      for (const env of page.items) if (env.status !== 'deleted') next[env.id] = env
      byId.value = next
      available.value = true
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) available.value = false
      else if (!quiet) throw err
    } finally {
      loading.value = false
    }
  }

  function handleMessage(data: string): void {
    let event: StreamEvent
    try {
      event = JSON.parse(data)
    } catch {
      return
    }
    if (event.type === 'environment' && event.environment) upsert(event.environment)
  }

  function startPolling(): void {
    stream.value = 'polling'
    if (!pollTimer) pollTimer = setInterval(() => void load(true), FALLBACK_POLL_MS)
    if (!reconnectTimer) {
      reconnectTimer = setTimeout(() => {
        reconnectTimer = null
        if (subscribers > 0) openStream()
      }, RECONNECT_MS)
    }
  }

  function stopPolling(): void {
    if (pollTimer) clearInterval(pollTimer)
    pollTimer = null
  }

  function openStream(): void {
    if (typeof EventSource === 'undefined') {
      startPolling()
      return
    }
    source?.close()
    stream.value = 'connecting'
    const es = new EventSource(STREAM_URL, { withCredentials: true })
    source = es
    es.onopen = () => {
      stream.value = 'live'
      stopPolling()
      // Catch up on whatever changed while we were not listening.
      void load(true)
    }
    es.onmessage = (e: MessageEvent) => handleMessage(String(e.data))
    es.addEventListener('environment', (e) => handleMessage(String((e as MessageEvent).data)))
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (404/401): fall back to slow polling, retry later.
        if (source === es) source = null
        startPolling()
      } else {
        stream.value = 'connecting' // the browser reconnects by itself
      }
    }
  }

  /** Views call this on mount; the stream stays open while at least one view listens. */
  function subscribe(): () => void {
    subscribers += 1
    if (subscribers === 1) openStream()
    return () => {
      subscribers -= 1
      if (subscribers === 0) disconnect()
    }
  }

  function disconnect(): void {
    source?.close()
    source = null
    stopPolling()
    if (reconnectTimer) clearTimeout(reconnectTimer)
    reconnectTimer = null
    stream.value = 'off'
  }

  function reset(): void {
    disconnect()
    subscribers = 0
    byId.value = {}
    available.value = null
  }

  return { byId, list, available, loading, stream, load, upsert, remove, subscribe, disconnect, reset, handleMessage }
})
