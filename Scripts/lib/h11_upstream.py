"""A differential HTTP/1.1 upstream for the smuggling tests, built on h11 (an independent, strict parser).

usage: h11_upstream.py RECORD_FILE

Listens on 127.0.0.1 on a free port and prints the port as its first line on standard output. Connections are
kept alive. For every request that h11 parses it appends one JSON line to RECORD_FILE (flushed per line):

  {"kind": "request", "seq": N, "conn": C, "method": ..., "target": ..., "version": ...,
   "headers": [[name, value], ...], "trailers": [...], "body": BASE64, "chunked": true|false}

and answers `200` with the body `{"seen": N}` (and `X-Seen: N`, for HEAD). A target with `delay=MS` in its query
is answered after MS milliseconds (at most 5000): a smuggled request's answer then comes when the gateway may have
given the connection to another user. When h11 finds a protocol error it appends
{"kind": "error", "conn": C, "error": ...} and closes the connection; when the peer closes in the middle of a
request it appends {"kind": "incomplete", ...} instead. Names and values are decoded as Latin-1, so every byte is
kept. The program ends when its standard input closes (the test process went away).
"""
import base64
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

import h11

MAX_CONNECTIONS = 256  # connections served at once; more wait in the listen queue
MAX_BODY = 1 << 20  # body bytes recorded per request; a longer body is an error
IDLE_TIMEOUT = 120  # seconds a connection may stay silent
READ_SIZE = 65536
MAX_DELAY_MS = 5000


class Recorder:
    """Appends JSON lines to the record file; numbers requests and connections."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0

    def next_connection(self):
        with self.lock:
            self.connections += 1
            return self.connections

    def request(self, record):
        with self.lock:
            self.requests += 1
            record["seq"] = self.requests
            self.write(record)
            return self.requests

    def event(self, record):
        with self.lock:
            self.write(record)

    def write(self, record):
        self.file.write(json.dumps(record, sort_keys=True) + "\n")
        self.file.flush()


def text(value):
    return value.decode("latin-1")


def delay_ms(target):
    query = urllib.parse.urlsplit(text(target)).query
    values = urllib.parse.parse_qs(query).get("delay", [])
    try:
        return min(max(int(values[0]), 0), MAX_DELAY_MS) if values else 0
    except ValueError:
        return 0


def serve(sock, recorder, slots):
    conn_id = recorder.next_connection()
    connection = h11.Connection(h11.SERVER)
    request = None
    body = bytearray()
    chunked = False
    peer_closed = False
    sock.settimeout(IDLE_TIMEOUT)
    try:
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as error:
                kind = "incomplete" if peer_closed else "error"
                recorder.event({"kind": kind, "conn": conn_id, "error": str(error),
                                "target": text(request.target) if request else None})
                return
            if event is h11.NEED_DATA:
                try:
                    data = sock.recv(READ_SIZE)
                except socket.timeout:
                    recorder.event({"kind": "timeout", "conn": conn_id,
                                    "target": text(request.target) if request else None})
                    return
                except OSError:
                    data = b""
                peer_closed = not data
                connection.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
                body = bytearray()
                chunked = any(name.lower() == b"transfer-encoding" for name, _ in event.headers.raw_items())
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    recorder.event({"kind": "error", "conn": conn_id, "error": "body longer than the recorder keeps",
                                    "target": text(request.target)})
                    return
            elif isinstance(event, h11.EndOfMessage):
                seq = recorder.request({
                    "kind": "request",
                    "conn": conn_id,
                    "method": text(request.method),
                    "target": text(request.target),
                    "version": text(request.http_version),
                    "headers": [[text(name), text(value)] for name, value in request.headers.raw_items()],
                    "trailers": [[text(name), text(value)] for name, value in event.headers.raw_items()],
                    "body": base64.b64encode(bytes(body)).decode("ascii"),
                    "chunked": chunked,
                })
                wait = delay_ms(request.target)
                if wait:
                    time.sleep(wait / 1000)
                answer = json.dumps({"seen": seq}).encode()
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer))),
                           ("X-Seen", str(seq))]
                sock.sendall(connection.send(h11.Response(status_code=200, headers=headers, reason=b"OK")))
                if request.method != b"HEAD":
                    sock.sendall(connection.send(h11.Data(data=answer)))
                sock.sendall(connection.send(h11.EndOfMessage()))
                request = None
                if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
                    connection.start_next_cycle()
                else:
                    return
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (OSError, h11.LocalProtocolError) as error:
        recorder.event({"kind": "error", "conn": conn_id, "error": "local: " + str(error)})
    finally:
        try:
            sock.close()
        finally:
            slots.release()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: h11_upstream.py RECORD_FILE")
    recorder = Recorder(sys.argv[1])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)

    def watch_stdin():
        # The test process holds our standard input; when it closes (or the process dies), stop.
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    while True:
        sock, _ = listener.accept()
        slots.acquire()
        threading.Thread(target=serve, args=(sock, recorder, slots), daemon=True).start()


if __name__ == "__main__":
    main()
