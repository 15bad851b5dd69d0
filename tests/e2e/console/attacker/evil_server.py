"""What a container's owner can serve on their environment's app host: anything.

Root in the container, they replace JupyterLab's Unix socket with this server, which
answers every path with the attack page (``/sw.js``: a service worker) and headers meant
to hurt: cookies for the whole apps domain and named like the platform's, and a
Service-Worker-Allowed for the whole host. Run inside the container by the browser test.
"""

import http.server
import os
import socketserver

PAGE = open("/root/evil.html", "rb").read()
WORKER = b"self.addEventListener('fetch', (e) => e.respondWith(new Response('served by the app host')));"
SOCKET = "/run/remotegpu/jupyter.sock"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # no client address on a Unix socket
        pass

    def do_GET(self):
        body, kind = (WORKER, "text/javascript") if self.path.startswith("/sw.js") else (PAGE, "text/html; charset=utf-8")
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Service-Worker-Allowed", "/")
        self.send_header("Set-Cookie", "rgpu_session=planted-by-upstream; Domain=localhost; Path=/")
        self.send_header("Set-Cookie", "__Host-rgpu_session=planted-by-upstream; Path=/; Secure")
        self.send_header("Set-Cookie", "rgpu_app=planted-by-upstream; Path=/")
        self.send_header("Set-Cookie", "evil_domain=planted-by-upstream; Domain=localhost; Path=/")
        self.send_header("Set-Cookie", "owners_own=1; Path=/")
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if __name__ == "__main__":
    fresh = SOCKET + ".evil"
    if os.path.exists(fresh):
        os.unlink(fresh)
    server = Server(fresh, Handler)
    os.chmod(fresh, 0o600)
    os.replace(fresh, SOCKET)  # JupyterLab's socket is now this server's
    server.serve_forever()
