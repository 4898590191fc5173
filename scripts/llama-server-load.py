# Load for llama-server, to compare with `specd bench --concurrency` side by side (docs/benchmarks.md):
# python3 scripts/llama-server-load.py PORT CLIENTS REQUESTS TOKENS, each client posting /completion back to back.
import json, sys, threading, time, urllib.request
port, conc, total, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
prompts = [json.loads(l)["prompt"] for l in open('/work/shared/bench/prompts.jsonl')]
lock = threading.Lock(); nxt = [0]; toks = [0]; lat = []
def worker():
    while True:
        with lock:
            i = nxt[0]; nxt[0] += 1
        if i >= total: return
        body = json.dumps({"prompt": prompts[i % len(prompts)], "n_predict": n, "temperature": 0, "cache_prompt": False}).encode()
        t = time.time()
        r = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/completion", body, {"Content-Type": "application/json"}))
        d = json.load(r)
        with lock:
            toks[0] += d["tokens_predicted"]; lat.append(time.time() - t)
t0 = time.time()
ths = [threading.Thread(target=worker) for _ in range(conc)]
[t.start() for t in ths]; [t.join() for t in ths]
w = time.time() - t0
lat.sort()
print(f"llama-server conc {conc}: {total} requests, {toks[0]} tokens, {toks[0]/w:.1f} tok/s, p50 {lat[len(lat)//2]*1000:.0f} ms")
