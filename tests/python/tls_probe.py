"""One connection to a TLS listener with Python's ssl module; prints what happened as JSON.

Usage: tls_probe.py --endpoint HOST:PORT [--ca FILE] [--cert FILE --key FILE]
       [--alpn h2|http/1.1] [--min-version 1.1|1.2|1.3] [--max-version 1.1|1.2|1.3] [--plaintext]

After the handshake it speaks a little of the listener's protocol (the HTTP/2 preface and
SETTINGS, or an HTTP/1.1 request) and reads the answer: under TLS 1.3 a server refuses a client
certificate only after the client's side of the handshake is done, so `ok` means the server
answered. Prints {"ok", "error", "version", "serial", "subject_cn", "alpn"}. `--plaintext` sends
an HTTP/1.1 request without TLS and reports whether an HTTP answer came back.
"""

import argparse
import json
import socket
import ssl
import warnings

VERSIONS = {"1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP1_REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--alpn", default="h2")
    ap.add_argument("--min-version")
    ap.add_argument("--max-version")
    ap.add_argument("--plaintext", action="store_true")
    args = ap.parse_args()
    host, port = args.endpoint.rsplit(":", 1)
    out = {"ok": False, "error": "", "version": "", "serial": None, "subject_cn": "", "alpn": ""}
    sock = socket.create_connection((host, int(port)), timeout=5)
    try:
        if args.plaintext:
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
            reply = sock.recv(64)
            out["ok"] = reply.startswith(b"HTTP/")
            out["error"] = repr(reply)
            return out
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(args.ca)
        if args.cert:
            ctx.load_cert_chain(args.cert, args.key)
        with warnings.catch_warnings():
            # TLS 1.1 is deprecated: asking for it is the point of some probes.
            warnings.simplefilter("ignore", DeprecationWarning)
            if args.min_version:
                ctx.minimum_version = VERSIONS[args.min_version]
            if args.max_version:
                ctx.maximum_version = VERSIONS[args.max_version]
        if args.max_version == "1.1":
            # OpenSSL 3 refuses to offer TLS 1.1 above security level 0.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.set_alpn_protocols([args.alpn])
        tls = ctx.wrap_socket(sock, server_hostname="localhost")
        out["version"] = tls.version()
        out["alpn"] = tls.selected_alpn_protocol() or ""
        cert = tls.getpeercert()
        out["serial"] = int(cert["serialNumber"], 16)
        out["subject_cn"] = dict(x[0] for x in cert["subject"]).get("commonName", "")
        tls.sendall(H2_PREFACE if args.alpn == "h2" else HTTP1_REQUEST)
        answer = tls.recv(64)
        out["ok"] = len(answer) > 0
        if not answer:
            out["error"] = "the server closed the connection without answering"
    except (OSError, ssl.SSLError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        sock.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
