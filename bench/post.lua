-- wrk script: POST the 2 KB sample referral to the JSON API.
-- wrk reports "Non-2xx or 3xx responses" when anything but a 202 comes back.
-- REFERRALD_PORTS="p1,p2,..." spreads wrk's threads over several referrald
-- instances on 127.0.0.1 (thread i to port i mod n; bench/run-pg), instead
-- of the one in the URL.
local f = assert(io.open(os.getenv("REFERRAL_FILE") or "bench/referral-2k.json", "r"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("REFERRALD_TOKEN") or "bench-token")

local ports = os.getenv("REFERRALD_PORTS")
if ports then
  local list, threads = {}, 0
  for port in ports:gmatch("%d+") do list[#list + 1] = port end
  function setup(thread)
    threads = threads + 1
    thread.addr = wrk.lookup("127.0.0.1", list[(threads - 1) % #list + 1])[1]
  end
end
