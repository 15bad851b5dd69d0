/// <reference types="vitest/config" />
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import Components from 'unplugin-vue-components/vite'
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers'
import * as ElementPlusIcons from '@element-plus/icons-vue'

// `npm run dev` proxies the API to a server started with `remotegpu serve --port 8080`.
const api = process.env.REMOTEGPU_API ?? 'http://127.0.0.1:8080'

// Icons used as tags in templates (<el-icon><Plus /></el-icon>) are imported where they are
// used, by name, instead of registering all ~300 globally. (A string prop such as
// prefix-icon="Search" is not a tag: import the icon and bind it, :prefix-icon="Search".)
const iconNames = new Set(Object.keys(ElementPlusIcons))
function ElementPlusIconsResolver(name: string) {
  return iconNames.has(name) ? { name, from: '@element-plus/icons-vue' } : undefined
}

export default defineConfig({
  plugins: [
    vue(),
    // First load stays small (tests/e2e/console/test_console_bundle.py): each template
    // imports the Element Plus components (and v-loading) it uses, with their styles, so
    // a route's chunk carries only what that route renders. ElMessage/ElMessageBox called
    // from code get their styles in main.ts.
    Components({
      resolvers: [ElementPlusResolver({ importStyle: 'css' }), ElementPlusIconsResolver],
      dirs: [], // local components stay explicitly imported
      dts: false,
    }),
  ],
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    chunkSizeWarningLimit: 2000,
    // dist/.vite/manifest.json: tests/e2e/console/test_console_bundle.py reads the chunk graph.
    manifest: true,
    // One stylesheet, loaded with the page (CSS is not in the JS budget): a route's first
    // visit then fetches only JS, which is retried on failure (utils/lazy.ts), and
    // style.css stays after the Element Plus rules it adjusts.
    cssCodeSplit: false,
    rollupOptions: {
      // Two pages: the console (index.html) and the remote desktop viewer (desktop.html),
      // which environments' desktop app hosts serve (entrypoints/http/desktop.py).
      input: { index: 'index.html', desktop: 'desktop.html' },
      output: {
        // Element Plus and xterm are split by use (per route, and the terminal panel), not
        // forced into one chunk each.
        manualChunks: {
          vue: ['vue', 'vue-router', 'pinia', 'vue-i18n'],
        },
      },
    },
  },
  server: {
    proxy: {
      '/api': { target: api, changeOrigin: false, ws: true },
    },
  },
  test: {
    environment: 'jsdom',
    include: ['tests/**/*.spec.ts'],
    css: false,
    server: { deps: { inline: ['element-plus'] } },
  },
})
