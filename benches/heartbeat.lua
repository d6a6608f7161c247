-- wrk -t1 -c64 -d10s -s benches/heartbeat.lua $HUB/api/agents/hb/heartbeat
-- (register agent "hb" first; M3SHDUP_TOKEN = master token)
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("M3SHDUP_TOKEN")
