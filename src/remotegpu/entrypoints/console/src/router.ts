import { createRouter, createWebHistory, type RouteRecordRaw, type Router } from 'vue-router'
import { ElMessage } from 'element-plus'
import { isAppAuthorizePath, useAuthStore } from './stores/auth'
import { i18n } from './i18n'
import { retryingImport as lazy } from './utils/lazy'

declare module 'vue-router' {
  interface RouteMeta {
    public?: boolean
    admin?: boolean
    title?: string
  }
}

export const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: lazy(() => import('./views/LoginView.vue')), meta: { public: true, title: 'auth.login' } },
  { path: '/register', name: 'register', component: lazy(() => import('./views/RegisterView.vue')), meta: { public: true, title: 'auth.register' } },
  {
    path: '/',
    component: lazy(() => import('./layouts/AppLayout.vue')),
    children: [
      { path: '', redirect: { name: 'environments' } },
      { path: 'environments', name: 'environments', component: lazy(() => import('./views/EnvironmentsView.vue')), meta: { title: 'nav.environments' } },
      { path: 'environments/new', name: 'environment-create', component: lazy(() => import('./views/EnvironmentCreateView.vue')), meta: { title: 'nav.create' } },
      { path: 'environments/:id', name: 'environment', component: lazy(() => import('./views/EnvironmentDetailView.vue')), props: true, meta: { title: 'nav.environments' } },
      { path: 'workspaces', name: 'workspaces', component: lazy(() => import('./views/WorkspacesView.vue')), meta: { title: 'nav.workspaces' } },
      { path: 'webhooks', name: 'webhooks', component: lazy(() => import('./views/WebhooksView.vue')), meta: { title: 'nav.webhooks' } },
      { path: 'datasets', name: 'datasets', component: lazy(() => import('./views/DataView.vue')), props: { kind: 'dataset' }, meta: { title: 'nav.datasets' } },
      { path: 'datasets/:id', name: 'dataset', component: lazy(() => import('./views/DataDetailView.vue')), props: (r) => ({ kind: 'dataset', id: r.params.id }), meta: { title: 'nav.datasets' } },
      { path: 'models', name: 'models', component: lazy(() => import('./views/DataView.vue')), props: { kind: 'model' }, meta: { title: 'nav.models' } },
      { path: 'models/:id', name: 'model', component: lazy(() => import('./views/DataDetailView.vue')), props: (r) => ({ kind: 'model', id: r.params.id }), meta: { title: 'nav.models' } },
      { path: 'images', name: 'images', component: lazy(() => import('./views/ImagesView.vue')), meta: { title: 'nav.images' } },
      { path: 'notifications', name: 'notifications', component: lazy(() => import('./views/NotificationsView.vue')), meta: { title: 'notifications.title' } },
      { path: 'billing', name: 'billing', component: lazy(() => import('./views/BillingView.vue')), meta: { title: 'nav.billing' } },
      { path: 'jobs', name: 'jobs', component: lazy(() => import('./views/JobsView.vue')), meta: { title: 'nav.jobs' } },
      { path: 'jobs/:id', name: 'job', component: lazy(() => import('./views/JobDetailView.vue')), props: true, meta: { title: 'nav.jobs' } },
      { path: 'services', name: 'services', component: lazy(() => import('./views/ServicesView.vue')), meta: { title: 'nav.services' } },
      { path: 'account', name: 'account', component: lazy(() => import('./views/AccountView.vue')), meta: { title: 'nav.account' } },
      { path: 'admin', redirect: { name: 'admin-hosts' } },
      { path: 'admin/hosts', name: 'admin-hosts', component: lazy(() => import('./views/admin/HostsView.vue')), meta: { admin: true, title: 'nav.hosts' } },
      { path: 'admin/users', name: 'admin-users', component: lazy(() => import('./views/admin/UsersView.vue')), meta: { admin: true, title: 'nav.users' } },
      { path: 'admin/quotas', name: 'admin-quotas', component: lazy(() => import('./views/admin/QuotasView.vue')), meta: { admin: true, title: 'nav.quotas' } },
      { path: 'admin/ssh-sessions', name: 'admin-ssh-sessions', component: lazy(() => import('./views/admin/SshSessionsView.vue')), meta: { admin: true, title: 'nav.sshSessions' } },
      { path: 'admin/audit', name: 'admin-audit', component: lazy(() => import('./views/admin/AuditView.vue')), meta: { admin: true, title: 'nav.audit' } },
      { path: 'tickets', name: 'tickets', component: lazy(() => import('./views/TicketsView.vue')), meta: { title: 'tickets.title' } },
      { path: 'tickets/:id', name: 'ticket', component: lazy(() => import('./views/TicketDetailView.vue')), props: true, meta: { title: 'tickets.title' } },
      { path: 'support/queue', name: 'support-queue', component: lazy(() => import('./views/SupportQueueView.vue')), meta: { title: 'tickets.queueTitle' } },
      { path: 'alerts', name: 'alerts', component: lazy(() => import('./views/AlertsView.vue')), meta: { title: 'monitoring.alertsTitle' } },
      { path: 'admin/fleet', name: 'admin-fleet', component: lazy(() => import('./views/admin/FleetView.vue')), meta: { admin: true, title: 'monitoring.fleetTitle' } },
      { path: 'admin/hosts/:id/metrics', name: 'admin-host-metrics', component: lazy(() => import('./views/admin/HostMetricsView.vue')), meta: { admin: true, title: 'monitoring.hostTitle' } },
      { path: ':pathMatch(.*)*', name: 'not-found', component: lazy(() => import('./views/NotFoundView.vue')) },
    ],
  },
]

export function installGuards(router: Router): void {
  router.beforeEach(async (to) => {
    const auth = useAuthStore()
    if (to.meta.public) {
      if ((to.name === 'login' || to.name === 'register') && (await auth.ensureUser())) {
        // Signed in already (a reload, or a handshake that found the access cookie expired).
        if (isAppAuthorizePath(to.query.next)) {
          window.location.assign(String(to.query.next))
          return false
        }
        return { name: 'environments' }
      }
      return true
    }
    const user = await auth.ensureUser()
    if (!user) return { name: 'login', query: { next: to.fullPath } }
    if (to.meta.admin && !user.is_admin) {
      ElMessage.warning(i18n.global.t('errors.adminOnly'))
      return { name: 'environments' }
    }
    return true
  })
  router.afterEach((to) => {
    const title = to.meta.title ? i18n.global.t(to.meta.title) : ''
    document.title = title ? `${title} · RemoteGPU` : 'RemoteGPU'
  })
}

export function makeRouter(): Router {
  const router = createRouter({ history: createWebHistory('/'), routes })
  installGuards(router)
  return router
}
