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

t.test("unknown init options are refused", function()
    luray.shutdown()
    t.raises(function() luray.init{num_cpu = 2} end, "num_cpu")
end)

t.done()
