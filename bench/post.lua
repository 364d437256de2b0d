-- wrk script: POST the 2 KB sample referral to the JSON API.
-- wrk reports "Non-2xx or 3xx responses" when anything but a 202 comes back.
local f = assert(io.open(os.getenv("REFERRAL_FILE") or "bench/referral-2k.json", "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("REFERRALD_TOKEN") or "bench-token")
