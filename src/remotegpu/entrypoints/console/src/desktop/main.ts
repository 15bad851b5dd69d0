// The remote desktop viewer, served on the environment's own app host
// ({env}--desktop.{apps domain}, see entrypoints/http/desktop.py): guacamole-common-js's
// client over the platform's websocket tunnel (/_remotegpu/tunnel) to guacd and the
// container's VNC server. Keyboard (keysyms: the browser's layout decides the characters),
// mouse, clipboard both ways, and the display scaled to fit the window on every resize
// (VNC desktops keep the size the container's X server has).
import Guacamole from 'guacamole-common-js'
import en from '../i18n/locales/en'
import zhCN from '../i18n/locales/zh-CN'

type Strings = typeof en.desktop
const lang = new URLSearchParams(location.search).get('lang') || navigator.language || 'en'
const zh = lang.toLowerCase().startsWith('zh')
const s: Strings = zh ? zhCN.desktop : en.desktop
document.documentElement.lang = zh ? 'zh-CN' : 'en'
document.title = `${s.title} · RemoteGPU`

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T
const screen = $<HTMLElement>('screen')
const status = $<HTMLElement>('status')
const reconnect = $<HTMLButtonElement>('reconnect')
const clipboard = $<HTMLTextAreaElement>('clipboard')
const panel = $<HTMLElement>('clipboard-panel')
$('title').textContent = s.title
$('clipboard-toggle').textContent = s.clipboard
$('clipboard-hint').textContent = s.clipboardHint
$('clipboard-send').textContent = s.send
reconnect.textContent = s.reconnect

function setStatus(text: string, state: string) {
  status.textContent = text
  status.dataset.state = state
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
let client: any = null
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let keyboard: any = null

function fit() {
  if (!client) return
  const display = client.getDisplay()
  const w = display.getWidth(), h = display.getHeight()
  if (!w || !h) return
  const scale = Math.min(screen.clientWidth / w, screen.clientHeight / h)
  display.scale(scale > 0 ? scale : 1)
}

function sendClipboard(text: string) {
  if (!client) return
  const stream = client.createClipboardStream('text/plain')
  const writer = new Guacamole.StringWriter(stream)
  writer.sendText(text)
  writer.sendEnd()
}

function connect() {
  reconnect.hidden = true
  setStatus(s.connecting, 'connecting')
  screen.replaceChildren()
  const tunnel = new Guacamole.WebSocketTunnel('/_remotegpu/tunnel')
  client = new Guacamole.Client(tunnel)
  const display = client.getDisplay()
  const element = display.getElement()
  screen.appendChild(element)
  display.onresize = fit

  client.onstatechange = (state: number) => {
    if (state === 3) { // CONNECTED
      setStatus(s.connected, 'connected')
      fit()
      screen.focus()
    } else if (state === 5) { // DISCONNECTED
      if (status.dataset.state !== 'failed') setStatus(s.closed, 'closed')
      reconnect.hidden = false
    }
  }
  // An "error" instruction from guacd reaches the client; a closed or refused tunnel (guacd
  // unreachable: 519, access revoked: 771, as the close reason) only the tunnel's handlers.
  const failed = (st: { code: number }) => {
    setStatus(st.code === 771 ? s.revoked : s.failed.replace('{code}', String(st.code)), 'failed')
    reconnect.hidden = false
  }
  client.onerror = failed
  tunnel.onerror = failed
  tunnel.onstatechange = (state: number) => {
    if (state === Guacamole.Tunnel.State.CLOSED) {
      if (status.dataset.state !== 'failed') setStatus(s.closed, 'closed')
      reconnect.hidden = false
    }
  }
  client.onclipboard = (stream: unknown, mimetype: string) => {
    if (!/^text\//.test(mimetype)) return
    const reader = new Guacamole.StringReader(stream)
    let text = ''
    reader.ontext = (part: string) => { text += part }
    reader.onend = () => {
      clipboard.value = text
      navigator.clipboard?.writeText(text).catch(() => undefined)
    }
  }

  const mouse = new Guacamole.Mouse(element)
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const onMouse = (state: any) => {
    const scale = display.getScale() || 1
    client.sendMouseState(new Guacamole.Mouse.State(
      state.x / scale, state.y / scale, state.left, state.middle, state.right, state.up, state.down))
  }
  mouse.onmousedown = mouse.onmouseup = mouse.onmousemove = onMouse

  const size = `width=${Math.round(screen.clientWidth)}&height=${Math.round(screen.clientHeight)}` +
    `&dpi=${Math.round(96 * (window.devicePixelRatio || 1))}` +
    `&timezone=${encodeURIComponent(Intl.DateTimeFormat().resolvedOptions().timeZone || '')}`
  client.connect(size)
}

// The keyboard goes to the desktop while the clipboard panel is not being typed in.
keyboard = new Guacamole.Keyboard(document)
keyboard.onkeydown = (keysym: number) => {
  if (document.activeElement === clipboard) return true
  client?.sendKeyEvent(1, keysym)
  return false
}
keyboard.onkeyup = (keysym: number) => {
  if (document.activeElement === clipboard) return
  client?.sendKeyEvent(0, keysym)
}

$('clipboard-toggle').addEventListener('click', () => { panel.hidden = !panel.hidden; fit() })
$('clipboard-send').addEventListener('click', () => sendClipboard(clipboard.value))
reconnect.addEventListener('click', () => { client?.disconnect(); connect() })
window.addEventListener('resize', fit)
window.addEventListener('beforeunload', () => client?.disconnect())
// A paste into the page (Ctrl+V outside the panel) goes to the desktop's clipboard first.
document.addEventListener('paste', (e) => {
  if (document.activeElement === clipboard) return
  const text = e.clipboardData?.getData('text/plain')
  if (text) { clipboard.value = text; sendClipboard(text) }
})

connect()
