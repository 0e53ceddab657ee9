-- runtime_env: a working directory whose modules every worker can require, environment variables,
-- and a clear error when a task needs a module the workers cannot find.
local t = require("harness")

local function mkdtemp()
    local p = os.tmpname()
    os.remove(p)
    assert(os.execute("mkdir -p " .. p))
    return p
end

local wd = mkdtemp()
local f = assert(io.open(wd .. "/envmod.lua", "w"))
f:write("return { answer = function() return 41 + 1 end }\n")
f:close()
local hidden = mkdtemp()
f = assert(io.open(hidden .. "/hiddenmod.lua", "w"))
f:write("return { value = 7 }\n")
f:close()

t.test("bad runtime_env is refused by name", function()
    t.raises(function() luray.init{runtime_env = {workdir = wd}} end, "workdir")
    t.raises(function() luray.init{runtime_env = {working_dir = wd .. "/nope"}} end, "not a directory")
    t.eq(luray.is_initialized(), false)
end)

luray.init{num_cpus = 2, runtime_env = {working_dir = wd, env_vars = {LURAY_TEST_VAR = "from-driver"}}}

t.test("workers require modules from working_dir and see env_vars", function()
    local task = luray.remote(function()
        return require("envmod").answer(), os.getenv("LURAY_TEST_VAR")
    end):options{num_returns = 2}
    local a, b = task:remote()
    t.eq(luray.get(a), 42)
    t.eq(luray.get(b), "from-driver")
end)

t.test("a module the workers cannot load gives a TaskError naming it", function()
    package.path = hidden .. "/?.lua;" .. package.path
    local hm = require("hiddenmod")
    local task = luray.remote(function() return hm.value end)
    local err = t.raises(function() luray.get(task:remote()) end, "hiddenmod")
    t.eq(err.type, "TaskError")
    -- the worker survives and keeps serving
    t.eq(luray.get(luray.remote(function() return 1 end):remote()), 1)
end)

luray.shutdown()
os.execute("rm -rf " .. wd .. " " .. hidden)
t.done()
