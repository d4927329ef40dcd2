"""Helpers for Scripts/bench-proxy: the tunnel sink and clients, the wrk runner and the summary.

Subcommands (each measuring one appends a JSON line to --results; `summary` reads them back):
  ports N        print N free TCP ports on 127.0.0.1
  sink PORT      the tunnel upstream: per connection, an 8-byte big-endian length L, then L bytes that
                 it counts and drops, then it answers "ok L\\n" and waits for the next length or EOF
  busy           how busy the machine's CPUs are before the benchmark (other load makes figures noisy)
  tlsinfo        the TLS version and cipher a default OpenSSL client (like wrk's) gets from a listener
  stream         send --bytes through one connection (plain TCP, TLS, or TLS + HTTP CONNECT) and time
                 from the first byte sent to the sink's "ok", with the client's and the proxy's CPU time
  idle           open --count tunnels, move a few bytes through each, leave them idle, and report the
                 proxy's resident memory (VmRSS) growth per tunnel
  wrk            run wrk --latency once and parse requests/s, latency percentiles and errors
  audit          note the size of the gateway's audit log from its signed checkpoint
  handshakes     TLS handshakes per second (openssl s_time, each with one request answered 404 by the
                 server itself), full (-new)
                 or resuming the first connection's session (-reuse), and how many did resume
  summary        medians, ratios and goals
"""
import argparse, json, os, re, selectors, socket, ssl, statistics, struct, subprocess, sys, time

CHUNK = 1 << 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def append_result(path, record):
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def free_ports(count):
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS for pid %d" % pid)


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) from /proc/PID/stat."""
    if not pid:
        return None
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid):
    """User + system CPU time of each thread of a process, by thread id, with the thread's name."""
    threads = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as handle:
                text = handle.read()
        except OSError:
            continue  # the thread ended meanwhile
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        threads[tid] = (name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return threads


def established_on_port(port):
    """Established TCP connections whose local port is `port` (the sink's side of each tunnel)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                        count += 1
        except FileNotFoundError:
            pass
    return count


# ---------------------------------------------------------------- sink

def run_sink(port):
    """One thread, non-blocking sockets, one large receive buffer shared by all connections."""
    selector = selectors.DefaultSelector()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ, None)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)

    class Conn:
        __slots__ = ("sock", "header", "remaining", "expected")

        def __init__(self, sock):
            self.sock, self.header, self.remaining, self.expected = sock, b"", None, 0

    while True:
        for key, _ in selector.select():
            if key.data is None:
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(sock, selectors.EVENT_READ, Conn(sock))
                continue
            conn = key.data
            try:
                count = conn.sock.recv_into(buffer)
            except BlockingIOError:
                continue
            except OSError:
                count = 0
            if count == 0:
                selector.unregister(conn.sock)
                conn.sock.close()
                continue
            offset = 0
            while offset < count:
                if conn.remaining is None:
                    take = min(8 - len(conn.header), count - offset)
                    conn.header += bytes(view[offset:offset + take])
                    offset += take
                    if len(conn.header) == 8:
                        conn.expected = conn.remaining = struct.unpack(">Q", conn.header)[0]
                        conn.header = b""
                else:
                    take = min(conn.remaining, count - offset)
                    conn.remaining -= take
                    offset += take
                if conn.remaining == 0:
                    conn.sock.setblocking(True)
                    conn.sock.sendall(b"ok %d\n" % conn.expected)
                    conn.sock.setblocking(False)
                    conn.remaining = None


# ---------------------------------------------------------------- clients

def client_context(ca):
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def open_tunnel(args, context, timeout=30):
    """A connection ready to carry bytes to the sink: TCP, then TLS when --ca, then CONNECT when --connect."""
    sock = socket.create_connection((args.host, args.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname=args.host)
    if args.connect:
        request = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (args.connect, args.connect)
        if args.token:
            request += "Proxy-Authorization: Bearer %s\r\n" % args.token
        sock.sendall((request + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise SystemExit("CONNECT %s: the proxy closed the connection (got %r)" % (args.connect, head[:300]))
            head += data
            if len(head) > 65536:
                raise SystemExit("CONNECT %s: no end of the response head in 64 KiB" % args.connect)
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split()
        if len(parts) < 2 or parts[1] != "200":
            raise SystemExit("CONNECT %s refused: %r" % (args.connect, head[:400].decode("latin-1")))
        if head.split(b"\r\n\r\n", 1)[1]:
            raise SystemExit("CONNECT %s: bytes after the response head before any were sent" % args.connect)
    return sock


def read_ack(sock, expected):
    line = b""
    while not line.endswith(b"\n"):
        data = sock.recv(64)
        if not data:
            raise SystemExit("the tunnel closed before the sink's acknowledgement (got %r)" % line)
        line += data
    if line.strip() != b"ok %d" % expected:
        raise SystemExit("unexpected acknowledgement %r (expected ok %d)" % (line, expected))


def describe_tls(sock):
    if isinstance(sock, ssl.SSLSocket):
        return "%s %s" % (sock.version(), sock.cipher()[0])
    return "plain TCP"


def run_stream(args):
    context = client_context(args.ca) if args.ca else None
    sock = open_tunnel(args, context, timeout=600)
    payload = memoryview(bytes(CHUNK))
    proxy_cpu0, client_cpu0 = cpu_seconds(args.pid), time.process_time()
    started = time.perf_counter()
    sock.sendall(struct.pack(">Q", args.bytes))
    remaining = args.bytes
    while remaining:
        step = min(CHUNK, remaining)
        sock.sendall(payload[:step])
        remaining -= step
    read_ack(sock, args.bytes)
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu0
    proxy_cpu = None if args.pid is None else cpu_seconds(args.pid) - proxy_cpu0
    tls = describe_tls(sock)
    sock.close()
    mib_s = args.bytes / elapsed / (1 << 20)
    gib = args.bytes / (1 << 30)
    record = {"kind": "tunnel", "label": args.label, "round": args.round, "bytes": args.bytes, "seconds": elapsed,
              "mib_s": mib_s, "client_cpu_share": client_cpu / elapsed, "tls": tls,
              "proxy_cpu_s_per_gib": None if proxy_cpu is None else proxy_cpu / gib}
    append_result(args.results, record)
    extra = "" if proxy_cpu is None else ", proxy CPU %.2f s/GiB" % record["proxy_cpu_s_per_gib"]
    print("  %-26s round %d: %8.1f MiB/s (%6.2f Gbit/s) in %.2f s, client CPU %3.0f%%%s [%s]" % (
        args.label, args.round, mib_s, mib_s * 8 * (1 << 20) / 1e9, elapsed, 100 * client_cpu / elapsed, extra, tls))


def run_idle(args):
    context = client_context(args.ca) if args.ca else None
    # Warm-up: a few tunnels opened, used and closed, so one-time set-up is not counted per tunnel.
    for _ in range(10):
        sock = open_tunnel(args, context)
        sock.sendall(struct.pack(">Q", 16) + b"x" * 16)
        read_ack(sock, 16)
        sock.close()
    time.sleep(1.0)
    sink_before = established_on_port(args.sink_port)
    rss_before = vm_rss_kib(args.pid)
    tunnels = []
    started = time.perf_counter()
    for _ in range(args.count):
        sock = open_tunnel(args, context)
        # One small round trip each way, so buffers a proxy sets up on first use exist; then idle.
        sock.sendall(struct.pack(">Q", 16) + b"x" * 16)
        read_ack(sock, 16)
        tunnels.append(sock)
    opened = time.perf_counter() - started
    time.sleep(1.5)
    rss_after = vm_rss_kib(args.pid)
    at_sink = established_on_port(args.sink_port) - sink_before
    for sock in tunnels:
        sock.close()
    per_tunnel = (rss_after - rss_before) / args.count
    record = {"kind": "idle", "label": args.label, "count": args.count, "rss_before_kib": rss_before,
              "rss_after_kib": rss_after, "kib_per_tunnel": per_tunnel, "at_sink": at_sink}
    append_result(args.results, record)
    print("  %-26s %d tunnels (%d reached the sink) opened in %.2f s: RSS %d -> %d KiB, %.1f KiB per idle tunnel" % (
        args.label, args.count, at_sink, opened, rss_before, rss_after, per_tunnel))
    if at_sink < args.count:
        print("  WARNING: only %d of %d tunnels are established at the sink" % (at_sink, args.count))


def cpu_busy_share(seconds=1.0):
    def sample():
        with open("/proc/stat") as handle:
            values = [int(value) for value in handle.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total
    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def run_busy():
    busy = cpu_busy_share()
    print("==> machine: %d CPUs, %.0f%% busy before the benchmark" % (os.cpu_count(), 100 * busy))
    if busy > 0.15:
        print("  WARNING: something else is using the CPUs (a build?): the figures will be noisy")


def run_tlsinfo(args):
    context = client_context(args.ca)
    with socket.create_connection((args.host, args.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=args.host) as sock:
            print("  %-26s %s" % (args.label, describe_tls(sock)))


# ---------------------------------------------------------------- wrk

TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
TIME = r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)"


def parse_wrk(text):
    """Requests/s, latency percentiles (ms), request count and errors from `wrk --latency` output."""
    result = {"percentiles_ms": {}}
    for match in re.finditer(r"^\s*([0-9]+(?:\.[0-9]+)?)%\s+" + TIME + r"\s*$", text, re.M):
        result["percentiles_ms"][str(float(match.group(1)))] = float(match.group(2)) * TIME_UNITS_MS[match.group(3)]
    match = re.search(r"^Requests/sec:\s+([0-9]+(?:\.[0-9]+)?)\s*$", text, re.M)
    if not match:
        raise ValueError("no Requests/sec line")
    result["rps"] = float(match.group(1))
    if "99.0" not in result["percentiles_ms"]:
        raise ValueError("no 99% latency line (was --latency given?)")
    match = re.search(r"^\s*([0-9]+) requests in " + TIME, text, re.M)
    result["requests"] = int(match.group(1)) if match else None
    match = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", text)
    result["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)", text)
    result["socket_errors"] = sum(int(value) for value in match.groups()) if match else 0
    return result


def run_wrk(args):
    import subprocess
    command = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%ds" % args.duration, "--latency"]
    for header in args.header or []:
        command += ["-H", header]
    command.append(args.url)
    before = thread_cpu_seconds(args.pid) if args.pid else {}
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - started
    after = thread_cpu_seconds(args.pid) if args.pid else {}
    output = completed.stdout + completed.stderr
    if args.raw:
        with open(args.raw, "w") as handle:
            handle.write(output)
    try:
        parsed = parse_wrk(output)
    except ValueError as error:
        sys.stderr.write(output)
        raise SystemExit("wrk against %s: %s (exit %d)" % (args.label, error, completed.returncode))
    percentiles = parsed["percentiles_ms"]
    record = {"kind": "wrk", "label": args.label, "round": args.round, "rps": parsed["rps"],
              "p50_ms": percentiles.get("50.0"), "p90_ms": percentiles.get("90.0"), "p99_ms": percentiles["99.0"],
              "requests": parsed["requests"], "non_2xx": parsed["non_2xx"], "socket_errors": parsed["socket_errors"]}
    if args.pid and parsed["requests"]:
        # What limits a proxy that is behind: its CPU per request, and whether one thread (an event
        # loop, a worker) was busy all the run.
        spent = {tid: seconds - before.get(tid, (name, 0.0))[1] for tid, (name, seconds) in after.items()}
        busiest = max(spent, key=spent.get)
        record["cpu_us_per_request"] = sum(spent.values()) * 1e6 / parsed["requests"]
        record["busiest_thread"] = after[busiest][0]
        record["busiest_share"] = spent[busiest] / wall
    append_result(args.results, record)
    name = "warm-up" if args.round == 0 else "round %d" % args.round
    problems = ""
    if parsed["non_2xx"] or parsed["socket_errors"]:
        problems = "   WARNING: %d non-2xx responses, %d socket errors" % (parsed["non_2xx"], parsed["socket_errors"])
    cpu = ""
    if "cpu_us_per_request" in record:
        cpu = "   CPU %5.1f us/req, %s %3.0f%% busy" % (
            record["cpu_us_per_request"], record["busiest_thread"], 100 * record["busiest_share"])
    print("  %-26s %-8s %9.0f req/s   p50 %7.3f ms   p99 %7.3f ms%s%s" % (
        args.label, name, parsed["rps"], record["p50_ms"] or float("nan"), record["p99_ms"], cpu, problems))


# ---------------------------------------------------------------- audit and summary

def run_audit(args):
    try:
        with open(args.checkpoint) as handle:
            lines = handle.read().split("\n")
    except OSError as error:
        print("  (no audit checkpoint to count records: %s)" % error)
        return
    append_result(args.results, {"kind": "audit", "label": args.label, "records": int(lines[1])})


def load(path):
    records = []
    if os.path.exists(path):
        with open(path) as handle:
            records = [json.loads(line) for line in handle if line.strip()]
    return records


def median_of(records, kind, label, field):
    values = [r[field] for r in records if r["kind"] == kind and r["label"] == label and r.get("round", 1) != 0
              and r.get(field) is not None]
    return statistics.median(values) if values else None


def busiest_thread(records, label):
    """The busiest thread of a proxy's measured runs and its median share of the run, or ""."""
    runs = [r for r in records if r["kind"] == "wrk" and r["label"] == label and r["round"] != 0 and "busiest_share" in r]
    if not runs:
        return ""
    return "%s, %.0f%% busy" % (runs[-1]["busiest_thread"], 100 * statistics.median(r["busiest_share"] for r in runs))


def run_summary(args):
    records = load(args.results)
    gateway = not args.skip_gateway
    invalid = [r for r in records if r["kind"] == "wrk" and (r["non_2xx"] or r["socket_errors"])]

    def fmt(value, pattern):
        return "n/a" if value is None else pattern % value

    print()
    print("==> summary (median of %d round%s; wrk %d thread%s, %d connections, %d s per run)" % (
        args.rounds, "" if args.rounds == 1 else "s", args.wrk_threads, "" if args.wrk_threads == 1 else "s", args.connections, args.duration))
    print("  %-44s %10s %11s %11s %11s  %s" % ("keep-alive HTTP GET / (tiny body)", "req/s", "p50", "p99", "CPU/req",
                                                "busiest thread"))
    rows = [("direct", "upstream direct (plain HTTP, no proxy)"), ("nginx", "nginx 1 worker, TLS 1.3, access log")]
    if gateway:
        rows.append(("gateway", "breakglass --threads 1, TLS, audit"))
    for label, title in rows:
        print("  %-44s %10s %11s %11s %11s  %s" % (title, fmt(median_of(records, "wrk", label, "rps"), "%.0f"),
                                                 fmt(median_of(records, "wrk", label, "p50_ms"), "%.3f ms"),
                                                 fmt(median_of(records, "wrk", label, "p99_ms"), "%.3f ms"),
                                                 fmt(median_of(records, "wrk", label, "cpu_us_per_request"), "%.1f us"),
                                                 busiest_thread(records, label)))
    print("  %-44s %10s %11s %11s" % ("tunnel, %s one way" % human_bytes(args.tunnel_bytes), "MiB/s", "proxy s/GiB",
                                      "client CPU"))
    rows = [("direct", "sink direct (plain TCP, no proxy)"), ("haproxy", "haproxy mode tcp, nbthread 1, TLS")]
    if gateway:
        rows.append(("gateway", "breakglass CONNECT, TLS"))
    client_bound = []
    for label, title in rows:
        share = median_of(records, "tunnel", label, "client_cpu_share")
        if label != "direct" and share is not None and share > 0.9:
            client_bound.append(label)
        print("  %-44s %10s %11s %11s" % (title, fmt(median_of(records, "tunnel", label, "mib_s"), "%.1f"),
                                          fmt(median_of(records, "tunnel", label, "proxy_cpu_s_per_gib"), "%.2f"),
                                          fmt(None if share is None else 100 * share, "%.0f%%")))
    if client_bound:
        print("  WARNING: the client used over 90%% of a core against %s: it may be what limits the figure" % (
            ", ".join(client_bound)))
    print("  %-44s %10s" % ("idle tunnels (%d), RSS growth" % args.idle_tunnels, "KiB each"))
    rows = [("haproxy", "haproxy (stand-in, checks the measurement)")]
    if gateway:
        rows.append(("gateway", "breakglass"))
    for label, title in rows:
        print("  %-44s %10s" % (title, fmt(median_of(records, "idle", label, "kib_per_tunnel"), "%.1f")))

    if gateway:
        audit = {r["label"]: r["records"] for r in records if r["kind"] == "audit"}
        requests = sum(r["requests"] or 0 for r in records
                       if r["kind"] == "wrk" and r["label"] == "gateway" and r["round"] != 0)
        if "before" in audit and "after" in audit:
            grown = audit["after"] - audit["before"]
            print("  audit log: %d records added during %d proxied requests (%.2f per request)" % (
                grown, requests, grown / requests if requests else float("nan")))
            if requests and grown < requests:
                print("  WARNING: fewer audit records than requests: is per-request audit on?")

    print("goals:")
    if not gateway:
        print("  gateway skipped (--skip-gateway): no goals judged")
        return 1 if invalid else 0

    def judge(title, value, goal, higher_is_better, unit):
        if value is None:
            print("  %-52s %10s   %s" % (title, "n/a", "MISSED (not measured)"))
            return
        ok = value >= goal if higher_is_better else value <= goal
        print("  %-52s %10s   %s" % (title, unit % value, "met" if ok else "MISSED"))

    def ratio(kind, field, numerator, denominator):
        a, b = median_of(records, kind, numerator, field), median_of(records, kind, denominator, field)
        return None if a is None or not b else a / b

    def handshake_median(label, mode, field):
        values = [r[field] for r in records
                  if r["kind"] == "handshake" and r["label"] == label and r["mode"] == mode and r.get(field)]
        return statistics.median(values) if values else None

    # One s_time client can be the limit on a small machine, so each handshake's server CPU time is
    # reported too: as a rate (1 / CPU time), it is what one server thread could serve.
    unresumed = [r for r in records if r["kind"] == "handshake" and r["mode"] == "reuse" and r["resumed"] < r["connections"] - 1]
    if unresumed:
        print("  WARNING: some -reuse connections did not resume: %s" % ", ".join(sorted({r["label"] for r in unresumed})))
    for mode in ("new", "reuse"):
        rates = [handshake_median(label, mode, "per_s") for label in ("gateway", "nginx")]
        cpus = [handshake_median(label, mode, "cpu_us_per_handshake") for label in ("gateway", "nginx")]
        rate = rates[0] / rates[1] if all(rates) else None
        capacity = cpus[1] / cpus[0] if all(cpus) else None
        if mode == "reuse":
            judge("resumed handshakes/s, gateway / nginx (goal >= 1.0x)", rate, 1.0, True, "%.2fx")
            judge("  the same per server CPU second (goal >= 1.0x)", capacity, 1.0, True, "%.2fx")
        else:
            for title, value in (("full handshakes/s, gateway / nginx (for scale)", rate),
                                 ("  the same per server CPU second", capacity)):
                if value is not None:
                    print("  %-52s %10s" % (title, "%.2fx" % value))
    rps_ratio = ratio("wrk", "rps", "gateway", "nginx")
    judge("keep-alive req/s, gateway / nginx (goal >= 1.0x)", rps_ratio, 1.0, True, "%.2fx")
    gateway_cpu = median_of(records, "wrk", "gateway", "cpu_us_per_request")
    nginx_cpu = median_of(records, "wrk", "nginx", "cpu_us_per_request")
    if rps_ratio is not None and rps_ratio < 1.0 and gateway_cpu and nginx_cpu:
        print("    what limits it: %.1f us of gateway CPU per request to nginx's %.1f us (%.2fx); busiest thread %s" % (
            gateway_cpu, nginx_cpu, gateway_cpu / nginx_cpu, busiest_thread(records, "gateway")))
    judge("p99 latency, gateway / nginx (goal <= 1.2x)", ratio("wrk", "p99_ms", "gateway", "nginx"), 1.2, False, "%.2fx")
    judge("tunnel throughput, gateway / haproxy (goal >= 1.0x)", ratio("tunnel", "mib_s", "gateway", "haproxy"), 1.0,
          True, "%.2fx")
    judge("RSS per idle tunnel (goal <= 64 KiB)", median_of(records, "idle", "gateway", "kib_per_tunnel"), 64, False,
          "%.1f KiB")
    if invalid:
        labels = sorted({r["label"] for r in invalid})
        print("  INVALID: wrk saw non-2xx responses or socket errors against: %s (raw output in the state folder)" % (
            ", ".join(labels)))
        return 1
    return 0


def handshakes(args):
    mode = "reuse" if args.reuse else "new"
    command = ["openssl", "s_time", "-connect", "127.0.0.1:%d" % args.port, "-CAfile", args.ca, "-" + mode,
               "-time", str(args.duration), "-www", "/handshake"]
    cpu_before = cpu_seconds(args.pid) if args.pid else None
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.duration + 60)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(args.pid) - cpu_before if args.pid else None
    found = re.search(r"(\d+) connections in [0-9.]+ real seconds", done.stdout)
    if done.returncode != 0 or not found:
        print("  %-8s %-5s s_time failed: %s" % (args.label, mode, (done.stderr or done.stdout)[-300:]), file=sys.stderr)
        return 1
    count = int(found.group(1))
    # s_time prints one character per connection: 'r' resumed, '*' a full handshake.
    marks = re.search(r"starting\n([^\n]*)", done.stdout)
    resumed = marks.group(1).count("r") if args.reuse and marks else 0
    record = {"kind": "handshake", "label": args.label, "mode": mode, "round": args.round, "connections": count,
              "per_s": count / elapsed, "resumed": resumed,
              "cpu_us_per_handshake": cpu * 1e6 / count if cpu is not None and count else None}
    append_result(args.results, record)
    extra = ", %d of them resumed" % resumed if args.reuse else ""
    server = ", server CPU %.0f us each" % record["cpu_us_per_handshake"] if record["cpu_us_per_handshake"] else ""
    print("  %-8s %-5s round %d: %7.0f handshakes/s (%d in %.1f s%s%s)" % (
        args.label, mode, args.round, count / elapsed, count, elapsed, extra, server))
    return 0


def human_bytes(count):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return "%d %s" % (count // size, unit)
    return "%d bytes" % count


# ---------------------------------------------------------------- command line

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("ports")
    command.add_argument("count", type=int)

    commands.add_parser("busy")

    command = commands.add_parser("sink")
    command.add_argument("port", type=int)

    def endpoint(command):
        command.add_argument("--label", required=True)
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--port", type=int, required=True)
        command.add_argument("--ca", help="TLS, trusting this CA (without it: plain TCP)")
        command.add_argument("--connect", help="send CONNECT to this target first")
        command.add_argument("--token", help="Proxy-Authorization bearer token for CONNECT")

    command = commands.add_parser("tlsinfo")
    endpoint(command)

    command = commands.add_parser("stream")
    endpoint(command)
    command.add_argument("--bytes", type=int, required=True)
    command.add_argument("--pid", type=int, help="the proxy's process, for its CPU time")
    command.add_argument("--round", type=int, default=1)
    command.add_argument("--results", required=True)

    command = commands.add_parser("idle")
    endpoint(command)
    command.add_argument("--count", type=int, required=True)
    command.add_argument("--pid", type=int, required=True)
    command.add_argument("--sink-port", type=int, required=True)
    command.add_argument("--results", required=True)

    command = commands.add_parser("wrk")
    command.add_argument("--label", required=True)
    command.add_argument("--url", required=True)
    command.add_argument("--header", action="append")
    command.add_argument("--threads", type=int, default=1)
    command.add_argument("--connections", type=int, default=50)
    command.add_argument("--duration", type=int, default=10)
    command.add_argument("--round", type=int, default=1)
    command.add_argument("--pid", type=int, help="the proxy's process, for its CPU time per request")
    command.add_argument("--raw")
    command.add_argument("--results", required=True)

    command = commands.add_parser("audit")
    command.add_argument("--label", required=True)
    command.add_argument("--checkpoint", required=True)
    command.add_argument("--results", required=True)

    command = commands.add_parser("handshakes")
    command.add_argument("--label", required=True)
    command.add_argument("--port", type=int, required=True)
    command.add_argument("--ca", required=True)
    command.add_argument("--duration", type=int, default=5)
    command.add_argument("--round", type=int, default=1)
    command.add_argument("--reuse", action="store_true")
    command.add_argument("--pid", type=int, help="the server process whose CPU time each handshake costs")
    command.add_argument("--results", required=True)
    command = commands.add_parser("summary")
    command.add_argument("--results", required=True)
    command.add_argument("--skip-gateway", action="store_true")
    command.add_argument("--rounds", type=int, required=True)
    command.add_argument("--wrk-threads", type=int, required=True)
    command.add_argument("--connections", type=int, required=True)
    command.add_argument("--duration", type=int, required=True)
    command.add_argument("--tunnel-bytes", type=int, required=True)
    command.add_argument("--idle-tunnels", type=int, required=True)

    args = parser.parse_args()
    if args.command == "ports":
        print(" ".join(str(port) for port in free_ports(args.count)))
    elif args.command == "sink":
        run_sink(args.port)
    elif args.command == "busy":
        run_busy()
    elif args.command == "tlsinfo":
        run_tlsinfo(args)
    elif args.command == "stream":
        run_stream(args)
    elif args.command == "idle":
        run_idle(args)
    elif args.command == "wrk":
        run_wrk(args)
    elif args.command == "audit":
        run_audit(args)
    elif args.command == "handshakes":
        sys.exit(handshakes(args))
    elif args.command == "summary":
        sys.exit(run_summary(args))


if __name__ == "__main__":
    main()
