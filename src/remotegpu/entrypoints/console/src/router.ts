import { createRouter, createWebHistory, type RouteRecordRaw, type Router } from 'vue-router'
import { ElMessage } from 'element-plus'
import { useAuthStore } from './stores/auth'
import { i18n } from './i18n'

declare module 'vue-router' {
  interface RouteMeta {
    public?: boolean
    admin?: boolean
    title?: string
  }
}

export const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: () => import('./views/LoginView.vue'), meta: { public: true, title: 'auth.login' } },
  { path: '/register', name: 'register', component: () => import('./views/RegisterView.vue'), meta: { public: true, title: 'auth.register' } },
  {
    path: '/',
    component: () => import('./layouts/AppLayout.vue'),
    children: [
      { path: '', redirect: { name: 'environments' } },
      { path: 'environments', name: 'environments', component: () => import('./views/EnvironmentsView.vue'), meta: { title: 'nav.environments' } },
      { path: 'environments/new', name: 'environment-create', component: () => import('./views/EnvironmentCreateView.vue'), meta: { title: 'nav.create' } },
      { path: 'environments/:id', name: 'environment', component: () => import('./views/EnvironmentDetailView.vue'), props: true, meta: { title: 'nav.environments' } },
      { path: 'workspaces', name: 'workspaces', component: () => import('./views/WorkspacesView.vue'), meta: { title: 'nav.workspaces' } },
      { path: 'webhooks', name: 'webhooks', component: () => import('./views/WebhooksView.vue'), meta: { title: 'nav.webhooks' } },
      { path: 'account', name: 'account', component: () => import('./views/AccountView.vue'), meta: { title: 'nav.account' } },
      { path: 'admin', redirect: { name: 'admin-hosts' } },
      { path: 'admin/hosts', name: 'admin-hosts', component: () => import('./views/admin/HostsView.vue'), meta: { admin: true, title: 'nav.hosts' } },
      { path: 'admin/users', name: 'admin-users', component: () => import('./views/admin/UsersView.vue'), meta: { admin: true, title: 'nav.users' } },
      { path: 'admin/quotas', name: 'admin-quotas', component: () => import('./views/admin/QuotasView.vue'), meta: { admin: true, title: 'nav.quotas' } },
      { path: 'admin/audit', name: 'admin-audit', component: () => import('./views/admin/AuditView.vue'), meta: { admin: true, title: 'nav.audit' } },
      { path: ':pathMatch(.*)*', name: 'not-found', component: () => import('./views/NotFoundView.vue') },
    ],
  },
]

export function installGuards(router: Router): void {
  router.beforeEach(async (to) => {
    const auth = useAuthStore()
    if (to.meta.public) {
      if (auth.isLoggedIn && (to.name === 'login' || to.name === 'register')) return { name: 'environments' }
      return true
    }
    if (!auth.isLoggedIn) return { name: 'login', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
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
