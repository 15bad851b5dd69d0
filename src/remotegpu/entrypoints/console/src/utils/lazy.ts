/**
 * A lazily imported chunk (a route's view, the terminal), retried when its fetch fails.
 *
 * Route-level code splitting fetches a page's chunks when it is first opened, so a network
 * blip at that moment (Chromium aborts in-flight requests with ERR_NETWORK_CHANGED when
 * interfaces come and go, e.g. Docker's veths) would break that navigation. The browser
 * does not remember a failed module fetch, so trying again fetches it afresh.
 */
export function retryingImport<T>(load: () => Promise<T>, attempts = 3, delayMs = 300): () => Promise<T> {
  return async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await load()
      } catch (err) {
        if (attempt >= attempts) throw err
        await new Promise((resolve) => setTimeout(resolve, delayMs * attempt))
      }
    }
  }
}
