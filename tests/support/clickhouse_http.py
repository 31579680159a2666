#!/usr/bin/env python3
"""A small ClickHouse HTTP front end over the real ClickHouse engine (PyPI `chdb-core`).

It serves the part of ClickHouse's HTTP interface that the Rust `clickhouse` crate (0.15) uses, on one
persistent chdb session with a data folder, so tests and the local quickstart run against the real engine:

  * SQL in the POST body, or in `?query=` with the INSERT data (or the rest of the query) in the body;
  * multipart/form-data bodies carrying `query` and `param_*` fields (the crate sends these for `.param()`);
  * URL settings: `database`, `default_format`, `param_*`; HTTP-only settings (`compress`, `query_id`,
    `wait_end_of_query`, ...) are ignored; any other setting is applied with `SET` for that request only;
  * `decompress=1`: the request body is in ClickHouse's compressed-block framing (LZ4 or none; the
    CityHash128 checksum is not verified);
  * responses are never compressed: `compress=1` / `Accept-Encoding` are ignored (the crate decompresses
    only when the response carries `Content-Encoding`);
  * chunked uploads, keep-alive, `GET /ping` and `GET /` answer `Ok.`;
  * errors: ClickHouse's status mapping (400 bad query, 404 unknown table/database, 500 otherwise), the
    engine's error text in the body and the `X-ClickHouse-Exception-Code` header.

It emulates the HTTP layer only: no sessions, no progress headers, no `X-ClickHouse-Summary`.
Access to the chdb session is serialized by one lock (queries run one at a time).
With `--https-port`, the same engine is also served over HTTPS (TLS 1.2+, the given certificate chain and key),
as ClickHouse does on its `https_port`.

Usage: clickhouse_http.py --data DIR [--host 127.0.0.1] [--port 8123] [--log FILE]
                          [--https-port 8124 --cert CHAIN.pem --key KEY.pem]
"""

import argparse
import logging
import re
import signal
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import lz4.block
from chdb import session as chdb_session

LOG = logging.getLogger("clickhouse_http")

# URL parameters that belong to the HTTP layer, not to the query's settings.
HTTP_ONLY_SETTINGS = {
    "query",
    "database",
    "default_format",
    "compress",
    "decompress",
    "query_id",
    "user",
    "password",
    "quota_key",
    "role",
    "session_id",
    "session_timeout",
    "session_check",
    "wait_end_of_query",
    "buffer_size",
    "enable_http_compression",
    "http_zlib_compression_level",
    "http_native_compression_disable_checksumming_on_decompress",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "add_http_cors_header",
    "http_wait_end_of_query",
    "http_response_buffer_size",
    "cancel_http_readonly_queries_on_client_close",
    "client_protocol_version",
}

# ClickHouse's own mapping of exception codes to HTTP status (HTTPHandler's exceptionCodeToHTTPStatus).
HTTP_STATUS_BY_CODE = {}
for _code in (6, 8, 15, 25, 26, 27, 38, 41, 44, 53, 62, 72, 106, 117, 167, 168, 321, 376):
    HTTP_STATUS_BY_CODE[_code] = 400  # parse errors, syntax, type mismatch, bad data
for _code in (46, 47, 50, 56, 60, 63, 73, 81, 115, 336):
    HTTP_STATUS_BY_CODE[_code] = 404  # unknown table/database/function/identifier/setting/format
HTTP_STATUS_BY_CODE.update({48: 501, 159: 408, 209: 503, 76: 503})

CODE_RE = re.compile(r"Code:\s*(\d+)")
INSERT_FORMAT_RE = re.compile(r"^\s*(INSERT\b.*?)\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I | re.S)
INSERT_RE = re.compile(r"^\s*INSERT\b", re.I)
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
}

COMPRESSED_HEADER = 16 + 9  # checksum + method + compressed size + uncompressed size


class ClientError(Exception):
    """A malformed request: answered with HTTP 400 and a ClickHouse-like code."""

    def __init__(self, message, code=1000):
        super().__init__(message)
        self.code = code


class Engine:
    """One chdb session, used by one request at a time."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.session = chdb_session.Session(path)
        self.default_database = self._scalar("SELECT currentDatabase()")

    def _scalar(self, sql):
        return self.session.query(sql, "TabSeparated").bytes().decode().strip()

    def execute(self, sql, fmt, database, settings, params, insert=None, data=None):
        """Runs one statement and returns the answer bytes.

        insert=(statement without FORMAT, format) streams the chunks of `data` into it.
        """
        with self.lock:
            self.session.query("USE " + quote_identifier(database or self.default_database))
            applied = []
            try:
                for name, value in settings:
                    self.session.query(f"SET {name} = {quote_string(value)}")
                    applied.append(name)
                if insert is not None:
                    statement, input_format = insert
                    inserter = self.session.send_insert(statement, input_format)
                    try:
                        for chunk in data:
                            if chunk:
                                inserter.append(chunk)
                    except BaseException:
                        inserter.cancel()
                        raise
                    inserter.finish()
                    return b""
                result = self.session.query(sql, fmt, params=params or None)
                return result.bytes()
            finally:
                for name in applied:
                    try:
                        self.session.query(f"SET {name} = DEFAULT")
                    except Exception:  # noqa: BLE001 - best effort, logged
                        LOG.exception("could not reset setting %s", name)

    def close(self):
        with self.lock:
            self.session.close()


def quote_identifier(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_string(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def exception_code(message):
    match = CODE_RE.search(message)
    return int(match.group(1)) if match else 1001


def http_status(code):
    return HTTP_STATUS_BY_CODE.get(code, 500)


def parse_multipart(body, content_type):
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ClientError("multipart body without boundary")
    delimiter = b"--" + match.group(1).encode()
    fields = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            raise ClientError("malformed multipart body")
        if value.endswith(b"\r\n"):
            value = value[:-2]
        name = re.search(rb'name="([^"]*)"', head)
        if not name:
            raise ClientError("multipart field without a name")
        fields[name.group(1).decode()] = value.decode("utf-8")
    return fields


def decompress_blocks(chunks):
    """ClickHouse compressed-block framing -> plain chunks, one block at a time."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= COMPRESSED_HEADER:
            method = buffer[16]
            compressed_size, size = struct.unpack_from("<II", buffer, 17)
            end = 16 + compressed_size
            if compressed_size < 9:
                raise ClientError("corrupted compressed block", code=271)
            if len(buffer) < end:
                break
            payload = bytes(buffer[COMPRESSED_HEADER:end])
            del buffer[:end]
            if method == 0x82:
                yield lz4.block.decompress(payload, uncompressed_size=size)
            elif method == 0x02:
                yield payload
            else:
                raise ClientError(f"unsupported compression method 0x{method:02x}", code=271)
    if buffer:
        raise ClientError("truncated compressed block", code=271)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chdb-http-frontend"
    engine = None  # set by main()

    def log_message(self, fmt, *args):  # route http.server's own messages to the log file
        LOG.info("%s " + fmt, self.client_address[0], *args)

    def log_request(self, code="-", size="-"):  # one line per request is logged by handle_request
        pass

    # --- body reading -------------------------------------------------------------------------
    def body_chunks(self):
        """Yields the request body (Content-Length or chunked) in pieces."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ClientError("connection closed inside a chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    piece = self.rfile.read(min(remaining, 1 << 20))
                    if not piece:
                        raise ClientError("connection closed inside a chunk")
                    remaining -= len(piece)
                    yield piece
                self.rfile.readline(3)
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                piece = self.rfile.read(min(remaining, 1 << 20))
                if not piece:
                    raise ClientError("connection closed inside the body")
                remaining -= len(piece)
                yield piece

    def drain(self, chunks):
        for _ in chunks:
            pass

    # --- answers ------------------------------------------------------------------------------
    def answer(self, status, body, content_type="text/plain; charset=UTF-8", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        else:
            self.send_header("Connection", "Keep-Alive")
            self.send_header("Keep-Alive", "timeout=30")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def answer_error(self, code, message, status=None):
        text = message.strip()
        if not text.startswith("Code:"):
            text = f"Code: {code}. DB::Exception: {text}"
        self.answer(
            status or http_status(code),
            (text + "\n").encode(),
            headers=[("X-ClickHouse-Exception-Code", str(code))],
        )

    # --- methods ------------------------------------------------------------------------------
    def do_HEAD(self):
        self.answer(200, b"")

    def do_GET(self):
        self.handle_request()

    def do_POST(self):
        self.handle_request()

    def handle_request(self):
        started = time.monotonic()
        url = urlsplit(self.path)
        chunks = self.body_chunks()
        sql_for_log = ""
        try:
            if url.path in ("/ping", "/") and not url.query and self.command == "GET":
                self.answer(200, b"Ok.\n")
                return
            if url.path not in ("/", ""):
                self.drain(chunks)
                raise ClientError(f"there is no handler for {url.path}", code=1002)
            args = dict(parse_qsl(url.query, keep_blank_values=True))
            content_type = self.headers.get("Content-Type", "")
            if content_type.lower().startswith("multipart/form-data"):
                args.update(parse_multipart(b"".join(chunks), content_type))
                chunks = iter(())
            if args.get("decompress") == "1":
                chunks = decompress_blocks(chunks)
            sql = args.get("query")
            insert = None
            data = None
            if sql is None:
                sql = b"".join(chunks).decode("utf-8")
            else:
                match = INSERT_FORMAT_RE.match(sql)
                if match:
                    insert = (match.group(1), match.group(2))
                    data = chunks
                else:
                    rest = b"".join(chunks)
                    if rest:
                        sql = sql + ("\n" if INSERT_RE.match(sql) else " ") + rest.decode("utf-8")
            sql_for_log = sql
            if not sql.strip():
                raise ClientError("Empty query", code=62)
            params = {k[6:]: v for k, v in args.items() if k.startswith("param_")}
            settings = []
            for name, value in args.items():
                if name in HTTP_ONLY_SETTINGS or name.startswith("param_"):
                    continue
                if not SETTING_NAME_RE.match(name):
                    raise ClientError(f"invalid setting name {name!r}", code=115)
                settings.append((name, value))
            fmt = args.get("default_format") or "TabSeparated"
            try:
                result = self.engine.execute(
                    sql, fmt, args.get("database"), settings, params, insert=insert, data=data
                )
            except ClientError:
                raise
            except Exception as err:  # noqa: BLE001 - the engine's errors go back to the client
                message = str(err)
                if data is not None:
                    try:
                        self.drain(data)
                    except Exception:  # noqa: BLE001
                        self.close_connection = True
                self.answer_error(exception_code(message), message)
                LOG.info("error %.3fs %s: %s", time.monotonic() - started, sql[:300], message[:300])
                return
            self.answer(200, result, CONTENT_TYPES.get(fmt, "application/octet-stream"))
            LOG.info(
                "ok %.3fs %dB%s %s",
                time.monotonic() - started,
                len(result),
                " (lz4 body)" if args.get("decompress") == "1" else "",
                sql_for_log[:300].replace("\n", " "),
            )
        except ClientError as err:
            try:
                self.drain(chunks)
            except Exception:  # noqa: BLE001
                self.close_connection = True
            self.answer_error(err.code, str(err), status=400)
            LOG.info("bad request %s: %s", sql_for_log[:300], err)
        except (UnicodeDecodeError, ValueError) as err:
            self.close_connection = True
            self.answer_error(1000, f"bad request: {err}", status=400)
            LOG.info("bad request %s: %s", sql_for_log[:300], err)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # One line instead of a traceback, e.g. a client that does not trust the certificate.
        LOG.info("connection from %s failed: %s", client_address[0], sys.exc_info()[1])


def tls_server(host, port, cert, key):
    """A Server on `port` whose connections are TLS; the handshake runs in the connection's own thread."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server = Server((host, port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="chdb data folder (kept across restarts)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--log", help="log file (default: stderr)")
    parser.add_argument("--https-port", type=int, help="also serve HTTPS on this port (needs --cert, --key)")
    parser.add_argument("--cert", help="PEM certificate chain of the HTTPS port")
    parser.add_argument("--key", help="PEM private key of the HTTPS port")
    options = parser.parse_args()
    if options.https_port and not (options.cert and options.key):
        parser.error("--https-port needs --cert and --key")

    logging.basicConfig(
        filename=options.log,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
    )
    Handler.engine = Engine(options.data)
    server = Server((options.host, options.port), Handler)
    servers = [server]
    if options.https_port:
        servers.append(tls_server(options.host, options.https_port, options.cert, options.key))

    def stop(signum, _frame):
        LOG.info("signal %d: shutting down", signum)
        for s in servers:
            threading.Thread(target=s.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info("listening on %s:%d, data %s", options.host, options.port, options.data)
    if options.https_port:
        LOG.info("listening on %s:%d (HTTPS, certificate %s)", options.host, options.https_port, options.cert)
    others = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}) for s in servers[1:]]
    try:
        for t in others:
            t.start()
        server.serve_forever(poll_interval=0.2)
    finally:
        for t in others:
            t.join()
        for s in servers:
            s.server_close()
        Handler.engine.close()
        LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
