-- wrk -t1 -c64 -d10s -s benches/create.lua $HUB/api/tasks   (M3SHDUP_TOKEN = master token)
-- Durable task creates; no agent serves the capability, so every task stays queued.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("M3SHDUP_TOKEN")
wrk.body = '{"title": "bench create", "prompt": "a short benchmark prompt of typical size", "required_capability": "bench-none"}'
