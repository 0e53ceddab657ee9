-- The REPL's stdin mode through the real binary is covered by tests/integration/test_repl.sh;
-- this file checks that luray is usable from a script without an explicit init.
local t = require("harness")

t.test("any API call before init initialises with defaults", function()
    t.eq(luray.is_initialized(), false)
    local r = luray.put("hello")
    t.eq(luray.is_initialized(), true)
    t.eq(luray.get(r), "hello")
end)

t.test("init twice is refused, shutdown then init works", function()
    t.raises(function() luray.init() end, "already initialized")
    luray.shutdown()
    t.eq(luray.is_initialized(), false)
    luray.init{num_cpus = 1}
    t.eq(luray.cluster_resources().CPU, 1)
end)

t.test("a remote function used before a shutdown still runs on the next cluster", function()
    -- The new node has never seen the function; the driver must ship it again even though its
    -- process id on the new node is the same as on the old one.
    local sq = luray.remote(function(x) return x * x end)
    t.eq(luray.get(sq:remote(3)), 9)
    luray.shutdown()
    luray.init{num_cpus = 1}
    t.eq(luray.get(sq:remote(4)), 16)
end)

t.test("shells the driver starts can wait for their own children", function()
    -- the driver's thread blocks SIGCHLD for the embedded node; its children must not inherit that
    if not luray.is_initialized() then luray.init{num_cpus = 1} end
    -- a shell's `wait` for a background job needs SIGCHLD: still running after 3 s means stuck
    local probe = "sh -c '(sleep 0.1 & wait)' >/dev/null 2>&1 & w=$!; sleep 3; "
        .. "if kill -0 $w 2>/dev/null; then kill -9 $w; echo stuck; else echo done; fi"
    local ok = os.execute(probe .. " | grep -q done")
    t.truthy(ok, "os.execute: a shell's wait never returned")
    local f = io.popen(probe)
    t.eq(f:read("l"), "done", "io.popen: a shell's wait never returned")
    f:close()
end)

t.test("unknown init options are refused", function()
    luray.shutdown()
    t.raises(function() luray.init{num_cpu = 2} end, "num_cpu")
end)

t.done()
