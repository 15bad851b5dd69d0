import { createApp } from 'vue'
import { createPinia } from 'pinia'
import { ElMessage } from 'element-plus'
// Element Plus components and their styles are imported per template (vite.config.ts);
// the message and confirm boxes are called from code, so their styles come here.
import 'element-plus/es/components/message/style/css'
import 'element-plus/es/components/message-box/style/css'
// Before style.css, which adjusts it (otherwise the card's own rule, loaded later, would win).
import 'element-plus/es/components/card/style/css'
import 'element-plus/theme-chalk/dark/css-vars.css'
import App from './App.vue'
import { i18n, translate, setLocale } from './i18n'
import { makeRouter } from './router'
import { configureClient } from './api'
import { useAuthStore } from './stores/auth'
import './style.css'

const app = createApp(App)
const pinia = createPinia()
app.use(pinia)
app.use(i18n)
const router = makeRouter()

const auth = useAuthStore()
let lastMessage = { text: '', at: 0 }
configureClient({
  auth: {
    // In memory only: from the login/refresh answer or GET /api/v1/auth/session after a reload.
    getCsrfToken: () => auth.csrfToken,
    refresh: () => auth.refresh(),
    onAuthLost: () => {
      auth.clear()
      const here = router.currentRoute.value
      if (!here.meta.public) void router.replace({ name: 'login', query: { next: here.fullPath } })
    },
  },
  notify: (text) => {
    // Several parallel requests failing the same way show one message.
    const now = Date.now()
    if (text === lastMessage.text && now - lastMessage.at < 2000) return
    lastMessage = { text, at: now }
    ElMessage({ type: 'error', message: text, showClose: true, duration: 5000, grouping: true })
  },
  translate: (key, params) => translate(key, params),
})
setLocale(i18n.global.locale.value as 'en' | 'zh-CN')

app.config.errorHandler = (err) => {
  // Never a blank page: an unexpected exception in a component becomes a message.
  // (ApiErrors were already shown by the client.)
  if ((err as Error)?.name === 'ApiError') return
  console.error(err)
  ElMessage({ type: 'error', message: err instanceof Error ? err.message : String(err), showClose: true })
}
window.addEventListener('unhandledrejection', (e) => {
  // ApiErrors were already shown by the client.
  if (e.reason?.name === 'ApiError') e.preventDefault()
})

app.use(router)
app.mount('#app')
