"""Grant latency benchmark client for Scripts/bench: N logins from C concurrent clients over TLS.

Each login is a new TLS connection and a POST /v1/grants with a fresh TOTP code (RFC 6238, computed
here). The gateway's Server-Timing header gives its PAM time and its total time per grant.
"""
import base64, hashlib, hmac, http.client, json, ssl, statistics, struct, sys, threading, time


def totp(secret_hex, now=None):
    counter = int((now or time.time()) // 30)
    digest = hmac.new(bytes.fromhex(secret_hex), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return "%06d" % (value % 1_000_000)


def percentile(values, p):
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


def main():
    host, port, ca, users_file, concurrency = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    users = [line.split() for line in open(users_file) if line.strip()]
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    results, failures, lock = [], [], threading.Lock()
    queue = list(users)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                name, password, secret = queue.pop()
            body = json.dumps({"user": name, "password": password, "otp": totp(secret), "pathway": "bench",
                               "reason": "benchmark"})
            started = time.perf_counter()
            connection = http.client.HTTPSConnection(host, port, context=context, timeout=30)
            connection.request("POST", "/v1/grants", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            connection.close()
            timing = dict(part.strip().split(";dur=") for part in (response.getheader("Server-Timing") or "").split(",") if ";dur=" in part)
            with lock:
                if response.status == 201:
                    results.append((elapsed, float(timing.get("pam", "nan")), float(timing.get("total", "nan")),
                                    float(timing.get("pamwait", "nan"))))
                else:
                    failures.append((name, response.status, payload[:200]))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    if failures:
        print("failures: %d, first: %r" % (len(failures), failures[0]))
    client = [r[0] for r in results]
    pam = [r[1] for r in results]
    total = [r[2] for r in results]
    wait = [r[3] for r in results]
    beyond = [r[2] - r[1] - r[3] for r in results]
    row = "  %-34s median %7.2f ms   p99 %7.2f ms   max %7.2f ms"
    print("grants: %d ok, %d failed, %d clients, %.2f s wall, %.0f grants/s" % (len(results), len(failures), concurrency, wall, len(results) / wall))
    if results:
        print(row % ("client latency (TLS connect + grant)", statistics.median(client), percentile(client, 99), max(client)))
        print(row % ("gateway total (Server-Timing)", statistics.median(total), percentile(total, 99), max(total)))
        print(row % ("PAM modules' own time (pam)", statistics.median(pam), percentile(pam, 99), max(pam)))
        print(row % ("wait for a PAM worker (pamwait)", statistics.median(wait), percentile(wait, 99), max(wait)))
        print(row % ("gateway beyond PAM (total-pam-wait)", statistics.median(beyond), percentile(beyond, 99), max(beyond)))
        print("goals: beyond-PAM median <= 5 ms: %s; client p99 <= 20 ms: %s" % (
            "met" if statistics.median(beyond) <= 5 else "MISSED", "met" if percentile(client, 99) <= 20 else "MISSED"))
    # A failed login: the gateway answers after its failure_delay (PAM's own ~2 s delay is switched off).
    name, _, secret = users[0]
    failed = []
    for _ in range(3):
        body = json.dumps({"user": name, "password": "wrong", "otp": totp(secret), "pathway": "bench", "reason": "benchmark"})
        started = time.perf_counter()
        connection = http.client.HTTPSConnection(host, port, context=context, timeout=30)
        connection.request("POST", "/v1/grants", body, {"Content-Type": "application/json"})
        status = connection.getresponse().status
        failed.append((time.perf_counter() - started) * 1000)
        connection.close()
    print("  failed login answered in           median %7.2f ms (status %d; failure_delay 1s, PAM's own delay off)" % (statistics.median(failed), status))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
