import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { workspaceApi, type Invitation, type Workspace } from '../api'

export const useWorkspacesStore = defineStore('workspaces', () => {
  const items = ref<Workspace[]>([])
  const loaded = ref(false)
  const byId = computed(() => Object.fromEntries(items.value.map((w) => [w.id, w])) as Record<string, Workspace>)
  // Invitations waiting for the current user's answer (membership needs their consent).
  const invitations = ref<Invitation[]>([])
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

  async function loadInvitations(): Promise<void> {
    invitations.value = (await workspaceApi.myInvitations({ quiet: true })).items
  }

  /** Accept: the workspace joins the list; returns it. */
  async function accept(invitation: Invitation): Promise<Workspace> {
    const ws = await workspaceApi.accept(invitation.id)
    invitations.value = invitations.value.filter((i) => i.id !== invitation.id)
    await load(true)
    return ws
  }

  async function decline(invitation: Invitation): Promise<void> {
    await workspaceApi.decline(invitation.id)
    invitations.value = invitations.value.filter((i) => i.id !== invitation.id)
  }

  function reset(): void {
    items.value = []
    invitations.value = []
    loaded.value = false
  }

  return { items, byId, loaded, load, invitations, loadInvitations, accept, decline, reset }
})
