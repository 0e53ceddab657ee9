-- The script that run.sh times for cold_run_seconds: one task on the embedded cluster.
local luray = require("luray")
local f = luray.remote(function() return 1 end)
assert(luray.get(f:remote()) == 1)
