import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { workspaceApi, type Workspace } from '../api'

export const useWorkspacesStore = defineStore('workspaces', () => {
  const items = ref<Workspace[]>([])
  const loaded = ref(false)
  const byId = computed(() => Object.fromEntries(items.value.map((w) => [w.id, w])) as Record<string, Workspace>)
  let pending: Promise<void> | null = null

  function load(force = false): Promise<void> {
    if (loaded.value && !force) return Promise.resolve()
    if (!pending) {
      pending = workspaceApi
        .list()
        .then((page) => {
          items.value = page.items
          loaded.value = true
        })
        .finally(() => {
          pending = null
        })
    }
    return pending
  }

  function reset(): void {
    items.value = []
    loaded.value = false
  }

  return { items, byId, loaded, load, reset }
})
