/**
 * The unread count behind the bell: read once, then kept live by the event stream's
 * "notifications" events (its own EventSource, so it does not depend on a view of
 * environments being open). Without a stream it re-reads every 30 seconds.
 */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { notificationApi } from '../api/notifications'

const STREAM_URL = '/api/v1/events/stream'
const FALLBACK_POLL_MS = 30_000

export const useNotificationsStore = defineStore('notifications', () => {
  const unread = ref(0)
  /** Bumped on every push, so an open inbox knows to re-read. */
  const version = ref(0)
  let source: EventSource | null = null
  let pollTimer: ReturnType<typeof setInterval> | null = null

  async function refresh(): Promise<void> {
    try {
      unread.value = (await notificationApi.unread()).unread
    } catch {
      /* quiet: the bell keeps its last count */
    }
  }

  function setUnread(n: number): void {
    unread.value = n
    version.value += 1
  }

  function start(): void {
    void refresh()
    if (source || pollTimer) return
    if (typeof EventSource === 'undefined') {
      pollTimer = setInterval(() => void refresh(), FALLBACK_POLL_MS)
      return
    }
    const es = new EventSource(STREAM_URL, { withCredentials: true })
    source = es
    es.onopen = () => void refresh() // catch up after a reconnect
    es.addEventListener('notifications', (e) => {
      try {
        const data = JSON.parse(String((e as MessageEvent).data))
        if (typeof data.unread === 'number') setUnread(data.unread)
      } catch {
        /* ignore a malformed event */
      }
    })
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        source = null
        if (!pollTimer) pollTimer = setInterval(() => void refresh(), FALLBACK_POLL_MS)
      }
    }
  }

  function stop(): void {
    source?.close()
    source = null
    if (pollTimer) clearInterval(pollTimer)
    pollTimer = null
    unread.value = 0
  }

  return { unread, version, refresh, setUnread, start, stop }
})
