#!/usr/bin/env python3
"""The issue 13 slow-body probe: 1,000 connections with a valid write key, each declaring a
1,000,000-byte body and sending one byte every 2 s; prints how many the server has closed,
and with which status, until all are closed or 45 s pass. Loopback only; the server it
starts is killed at the end. Needs `ulimit -n` above 1,000.

    ulimit -n 4096; python3 benches/load/slow_bodies.py target/release/registrar [server flags]
"""
import json, shutil, socket, subprocess, sys, tempfile, time, urllib.request
binary, timeout_flag = sys.argv[1], sys.argv[2:]
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
d = tempfile.mkdtemp()
srv = subprocess.Popen([binary, "--bind", f"127.0.0.1:{port}", "--data-dir", d, "--operator-key", "op_x", *timeout_flag], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = f"http://127.0.0.1:{port}"
for _ in range(200):
    try: urllib.request.urlopen(base + "/healthz"); break
    except OSError: time.sleep(0.05)
def call(method, path, key, body):
    r = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method, headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(r).read())
call("POST", "/admin/tenants", "op_x", {"id": "acme"})
key = call("POST", "/admin/tenants/acme/keys", "op_x", {"role": "write"})["key"]
socks = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST /contacts/acme HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n ".encode())
    s.setblocking(False)
    socks.append(s)
start = time.time()
open_ = set(range(1000)); statuses = {}
bufs = {i: b"" for i in range(1000)}
while time.time() - start < 45 and open_:
    for i in list(open_):
        try:
            data = socks[i].recv(65536)
            if not data:
                open_.discard(i); st = bufs[i][9:12].decode() or "none"; statuses[st] = statuses.get(st, 0) + 1
            else: bufs[i] += data
        except BlockingIOError: pass
        except OSError:
            open_.discard(i); st = bufs[i][9:12].decode() or "reset"; statuses[st] = statuses.get(st, 0) + 1
    if int(time.time() - start) % 2 == 0:
        for i in open_:
            try: socks[i].send(b" ")
            except OSError: pass
    time.sleep(0.5)
    print(f"{time.time()-start:5.1f}s open {len(open_)} closed {statuses}", flush=True) if int((time.time()-start)*2) % 10 == 0 else None
print(f"end {time.time()-start:.1f}s: still open {len(open_)}; closed by status {statuses}")
srv.kill()
srv.wait()
shutil.rmtree(d, ignore_errors=True)
