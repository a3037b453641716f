"""A small HTTP front that serves, from a real ClickHouse engine (chDB, in process), the subset
of ClickHouse's HTTP interface that wasmcol's clickhouse exporter speaks, so tests and
benchmarks can run the exporter against a current engine without a ClickHouse server.

Usage: clickhouse_front.py --data DIR [--port N] [--user U --password P]
                           [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
                           [--drop-answers N]

Prints "LISTENING <port>" on stdout once it accepts connections.

--tls-cert/--tls-key serve https instead of http (PEM certificate chain and key);
--tls-client-ca also requires a client certificate signed by that CA (mutual TLS).

The subset (what a real server does for the same request):
- POST / (or GET) with the statement in `?query=`, in the body, or `?query=` followed by the
  body; `database=`; any other URL parameter is a setting (unknown ones fail with
  UNKNOWN_SETTING, as a server answers).
- INSERT ... FORMAT <fmt> with `?query=` and the data in the body, `Content-Encoding` gzip,
  deflate, br, xz, zstd, lz4 or bz2 (decoded by the engine itself through INFILE COMPRESSION).
- Bodies with Content-Length or chunked.
- Credentials: HTTP basic auth, X-ClickHouse-User/X-ClickHouse-Key, or user=/password=.
- GET /ping and an empty GET / answer "Ok.".
- Errors: the engine's "Code: N. DB::Exception: ..." text, the HTTP status ClickHouse maps that
  code to, and X-ClickHouse-Exception-Code.

--drop-answers N is fault injection for tests: the first N inserts are executed, then the
connection is closed without an answer (an answer lost on the way back).
"""

import argparse
import base64
import os
import re
import ssl
import sys
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import chdb
from chdb import session as chs

# Parameters that are not settings (ClickHouse's HTTPHandler reserves these).
RESERVED = {
    "query", "database", "user", "password", "quota_key", "query_id", "stacktrace",
    "default_format", "session_id", "session_timeout", "session_check", "compress",
    "decompress", "buffer_size", "wait_end_of_query", "role",
}
ENCODINGS = {"gzip", "deflate", "br", "xz", "zstd", "lz4", "bz2"}

# ClickHouse's exceptionCodeToHTTPStatus, for the codes the exporter can meet.
STATUS = {
    194: 401,  # REQUIRED_PASSWORD
    192: 403, 193: 403, 516: 403, 497: 403,  # UNKNOWN_USER, WRONG_PASSWORD, AUTH_FAILED, ACCESS_DENIED
    36: 400, 62: 400, 27: 400, 33: 400, 41: 400, 53: 400, 117: 400, 44: 400, 16: 400,
    60: 404, 81: 404, 46: 404, 47: 404, 50: 404, 115: 404, 73: 404,
    48: 501, 159: 408, 209: 503,
}
INSERT_RE = re.compile(r"^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+(\w+)\s*;?\s*$", re.I | re.S)
FORMAT_RE = re.compile(r"\bFORMAT\s+\w+\s*;?\s*$", re.I)


class Engine:
    """One chDB session; chDB runs one query at a time per session, so calls are serialised."""

    def __init__(self, path):
        self.session = chs.Session(path)
        self.lock = threading.Lock()
        self.spool = tempfile.mkdtemp(prefix="chfront-")

    def run(self, query, fmt="TabSeparated"):
        with self.lock:
            return self.session.query(query, fmt).bytes()

    def run_in(self, database, query, fmt="TabSeparated"):
        with self.lock:
            if database:
                self.session.query(f"USE `{database}`")
            try:
                return self.session.query(query, fmt).bytes()
            finally:
                if database:
                    self.session.query("USE default")


class ChError(Exception):
    def __init__(self, code, text):
        super().__init__(text)
        self.code = code


def settings_clause(settings):
    parts = []
    for k, v in settings.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ChError(115, f"Code: 115. DB::Exception: Unknown setting '{k}'. (UNKNOWN_SETTING)")
        if re.fullmatch(r"-?\d+(\.\d+)?", v):
            parts.append(f"{k} = {v}")
        else:
            parts.append(f"{k} = '" + v.replace("\\", "\\\\").replace("'", "\\'") + "'")
    return ", ".join(parts)


def error_code(text):
    m = re.search(r"Code:\s*(\d+)", text)
    return int(m.group(1)) if m else 1001


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chdb-front"

    def log_message(self, fmt, *args):  # quiet unless --log: tests read their own output
        if self.server.log:
            sys.stderr.write("chdb-front: " + (fmt % args)[:300] + "\n")

    def reply(self, status, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def fail(self, code, text):
        if not text.startswith("Code:"):
            text = f"Code: {code}. DB::Exception: {text}"
        self.reply(STATUS.get(code, 500), (text.rstrip() + "\n").encode(),
                   {"X-ClickHouse-Exception-Code": str(code)})

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def authenticate(self, params):
        srv = self.server
        user = self.headers.get("X-ClickHouse-User") or params.get("user")
        key = self.headers.get("X-ClickHouse-Key") or params.get("password") or ""
        auth = self.headers.get("Authorization")
        if auth and auth.lower().startswith("basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                raise ChError(516, "Code: 516. DB::Exception: malformed basic authentication. (AUTHENTICATION_FAILED)")
        user = user or "default"
        if user != srv.user or key != srv.password:
            raise ChError(516, f"Code: 516. DB::Exception: {user}: Authentication failed: password is "
                               "incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)")

    def handle_any(self, method):
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        body = self.read_body()
        if url.path == "/ping" or (url.path == "/" and method == "GET" and not params):
            return self.reply(200, b"Ok.\n")
        if url.path != "/":
            return self.fail(1001, f"There is no handle {url.path}")
        try:
            self.authenticate(params)
            self.execute(method, params, body)
        except ChError as e:
            self.fail(e.code, str(e))
        except Exception as e:  # the engine's own errors carry "Code: N."
            text = str(e)
            self.fail(error_code(text), text)

    def execute(self, method, params, body):
        srv = self.server
        engine = srv.engine
        database = params.get("database") or self.headers.get("X-ClickHouse-Database") or ""
        settings = {k: v for k, v in params.items() if k not in RESERVED}
        query = params.get("query")
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        insert = INSERT_RE.match(query) if query else None
        if insert and method == "POST":
            if encoding and encoding not in ENCODINGS:
                raise ChError(336, f"Code: 336. DB::Exception: Unknown HTTP compression method {encoding!r}. (UNKNOWN_COMPRESSION_METHOD)")
            fd, path = tempfile.mkstemp(dir=engine.spool)
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            try:
                sql = f"{insert.group(1)} FROM INFILE '{path}'"
                if encoding:
                    sql += f" COMPRESSION '{encoding}'"
                if settings:
                    sql += " SETTINGS " + settings_clause(settings)
                sql += f" FORMAT {insert.group(2)}"
                engine.run_in(database, sql)
            finally:
                os.unlink(path)
            with srv.counter_lock:
                srv.inserts += 1
                drop = srv.inserts <= srv.drop_answers
            if drop:
                # Written, but the client never hears so: it must retry, and the retry must
                # not duplicate the rows.
                self.close_connection = True
                self.connection.shutdown(2)
                return
            return self.reply(200, b"")
        if encoding and body:
            raise ChError(1001, "compressed statements are outside this front's subset")
        text = body.decode() if query is None else (query + (" " + body.decode() if body else ""))
        if not text.strip():
            return self.reply(200, b"Ok.\n")
        if settings:
            engine.run("SELECT 1 SETTINGS " + settings_clause(settings))  # unknown ones fail
        fmt = params.get("default_format") or "TabSeparated"
        out = engine.run_in(database, text, fmt) if not FORMAT_RE.search(text) else \
            engine.run_in(database, text, "TabSeparated")
        self.reply(200, out)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="the engine's data directory (kept across restarts)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user", default="default")
    ap.add_argument("--password", default="")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-client-ca")
    ap.add_argument("--drop-answers", type=int, default=0)
    ap.add_argument("--log", action="store_true", help="log every request to stderr")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_client_ca and not args.tls_cert):
        ap.error("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.engine = Engine(args.data)
    srv.user, srv.password, srv.log = args.user, args.password, args.log
    srv.drop_answers, srv.inserts, srv.counter_lock = args.drop_answers, 0, threading.Lock()
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=args.tls_client_ca)
        # The handshake runs in accept(); a client refusing the certificate makes accept() raise
        # an SSLError (an OSError), which the server logs nowhere and survives.
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"LISTENING {srv.server_address[1]} chdb {chdb.__version__}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
