-- Collective groups among actors (require("luray._plugin.collective")): 2 and 3 ranks over
-- shared memory and over tcp, sum/mean/max on float32 and float64, tiny, odd and large sizes,
-- repeated calls, lists, copies, broadcast, barrier, and a killed rank making the others fail.
local t = require("harness")
local C = require("luray._plugin.collective")
luray.init{num_cpus = 2}

-- Rank r's element i: a multiple of 1/8 below 2^10, so float32 sums are exact in any order.
local function value(r, i)
    return ((r * 7919 + i * 104729) % 2001 - 1000) / 8
end

local Rank = luray.actor{
    join = function(self, spec)
        self.C = require("luray._plugin.collective")
        self.g = self.C.group(spec)
        self.rank = spec.rank
        return self.g:transport()
    end,
    -- Reduces n generated elements; returns {the result's bytes, the largest error against the
    -- reduction computed here in double precision}.
    check = function(self, n, dtype, op, world)
        local vals = {}
        for i = 1, n do vals[i] = value(self.rank, i) end
        local x = luray.tensor(vals, dtype)
        local same = self.g:allreduce(x, op)
        assert(same == x, "allreduce returns its tensor")
        local worst = 0
        for i = 1, n do
            local acc = value(0, i)
            for k = 1, world - 1 do
                local v = value(k, i)
                acc = op == "max" and math.max(acc, v) or acc + v
            end
            if op == "mean" then acc = acc / world end
            worst = math.max(worst, math.abs(x:get(i) - acc))
        end
        return {x:tostring(), worst}
    end,
    -- An argument tensor is a read-only view of the store: in place it is refused.
    reduce_arg = function(self, x, op, opts)
        return self.g:allreduce(x, op, opts)
    end,
    reduce_list = function(self, list, op)
        local mine = {}
        for i, x in ipairs(list) do mine[i] = x:clone() end
        self.g:allreduce(mine, op)
        local out = {}
        for i, x in ipairs(mine) do out[i] = x:totable() end
        return out
    end,
    broadcast = function(self, x, root)
        x = x:clone()
        return self.g:broadcast(x, root):totable()
    end,
    -- Arrives at the barrier at `at` (CLOCK_MONOTONIC, one clock for every process here);
    -- returns when it left, on the same clock.
    barrier_at = function(self, at)
        local now = require("luray.core").now
        if at > now() then luray.sleep(at - now()) end
        self.g:barrier()
        return now()
    end,
    try = function(self, what, ...)
        local ok, err = pcall(self.g[what], self.g, ...)
        return {ok, tostring(err)}
    end,
    close = function(self) self.g:close() end,
}

local now = require("luray.core").now

local seq = 0
local function new_id()
    seq = seq + 1
    return string.format("lua-test-%d-%d-%d", os.time(), math.random(1, 1e9), seq)
end

-- n actors joined in one group; spec_extra adds fields to every rank's spec.
local function group(n, transport, spec_extra)
    local ranks, refs, addrs = {}, {}, {}
    for k = 1, n do addrs[k] = "127.0.0.1:" .. C.free_port() end
    local id = new_id()
    for k = 1, n do
        local spec = {id = id, rank = k - 1, world_size = n, transport = transport,
                      addresses = addrs, timeout_s = 30}
        for key, v in pairs(spec_extra or {}) do spec[key] = v end
        ranks[k] = Rank:remote()
        refs[k] = ranks[k].join:remote(spec)
    end
    return ranks, luray.get(refs)
end

local function close(ranks)
    for _, r in ipairs(ranks) do luray.kill(r) end
end

-- Every rank runs check(n, dtype, op); all must end with the same bytes, within tol.
local function check_all(ranks, n, dtype, op, tol)
    local refs = {}
    for k, r in ipairs(ranks) do refs[k] = r.check:remote(n, dtype, op, #ranks) end
    local first
    for k = 1, #ranks do
        local bytes, worst = table.unpack(luray.get(refs[k]))
        t.truthy(worst <= (tol or 0), string.format("rank %d: error %g for %s n=%d", k - 1,
            worst, op, n))
        first = first or bytes
        t.eq(#bytes, #first)
        t.truthy(bytes == first, "ranks hold identical bits")
    end
end

for _, transport in ipairs({"shm", "tcp"}) do
    t.test(transport .. ": 2 ranks, sum/mean/max on float32 and float64", function()
        local ranks, kinds = group(2, transport)
        t.eq(kinds, {transport, transport})
        for _, dtype in ipairs({"float32", "float64"}) do
            for _, op in ipairs({"sum", "mean", "max"}) do check_all(ranks, 1001, dtype, op) end
        end
        close(ranks)
    end)

    t.test(transport .. ": 3 ranks, tiny, odd and large sizes, repeated", function()
        local ranks = group(3, transport)
        for _, n in ipairs({1, 2, 3, 17, 64, 65, 4097, 300001}) do
            check_all(ranks, n, "float32", "sum")
        end
        for i = 1, 25 do
            check_all(ranks, (i * 37) % 200 + 1, i % 2 == 0 and "float64" or "float32",
                i % 3 == 0 and "max" or "mean", 1e-5)
        end
        close(ranks)
    end)
end

t.test("read-only tensors: refused in place, reduced with copy = true", function()
    local ranks = group(2, "shm")
    local x = luray.tensor({1, 2, 3})
    local err = t.raises(function() luray.get(ranks[1].reduce_arg:remote(x, "sum")) end,
        "read%-only")
    local refs = {}
    for k, r in ipairs(ranks) do
        refs[k] = r.reduce_arg:remote(luray.tensor({k, 10 * k, 100 * k}), "sum", {copy = true})
    end
    for _, got in ipairs(luray.get(refs)) do t.eq(got:totable(), {3.0, 30.0, 300.0}) end
    t.truthy(tostring(err):find("copy = true"))
    close(ranks)
end)

t.test("lists of tensors, in place", function()
    local ranks = group(2, "shm")
    local refs = {}
    for k, r in ipairs(ranks) do
        refs[k] = r.reduce_list:remote({luray.tensor({k, k}), luray.tensor({{k}}, "float64")},
            "mean")
    end
    for _, got in ipairs(luray.get(refs)) do t.eq(got, {{1.5, 1.5}, {{1.5}}}) end
    close(ranks)
end)

t.test("broadcast from rank 1 of 3", function()
    for _, transport in ipairs({"shm", "tcp"}) do
        local ranks = group(3, transport)
        local refs = {}
        for k, r in ipairs(ranks) do
            refs[k] = r.broadcast:remote(luray.tensor({k, k + 0.5, -k}, "float64"), 1)
        end
        for _, got in ipairs(luray.get(refs)) do t.eq(got, {2.0, 2.5, -2.0}) end
        close(ranks)
    end
end)

t.test("barrier holds everyone until the last arrives", function()
    for _, transport in ipairs({"shm", "tcp"}) do
        local ranks = group(3, transport)
        local start, refs = now() + 0.5, {}
        for k, r in ipairs(ranks) do refs[k] = r.barrier_at:remote(start + (k - 1) * 0.2) end
        for _, left in ipairs(luray.get(refs)) do
            t.truthy(left >= start + 0.4, transport .. ": left early by " .. start + 0.4 - left)
        end
        close(ranks)
    end
end)

t.test("transport auto: shm on one node, tcp across nodes", function()
    local ranks, kinds = group(2, "auto", {nodes = {"n1", "n1"}})
    t.eq(kinds, {"shm", "shm"})
    check_all(ranks, 100, "float32", "sum")
    close(ranks)
    ranks, kinds = group(2, "auto", {nodes = {"n1", "n2"}})
    t.eq(kinds, {"tcp", "tcp"})
    check_all(ranks, 100, "float32", "sum")
    close(ranks)
end)

t.test("ranks that disagree all fail, and the group goes on", function()
    local ranks = group(2, "shm")
    local a = ranks[1].try:remote("allreduce", luray.tensor({1, 2}), "sum", {copy = true})
    local b = ranks[2].try:remote("allreduce", luray.tensor({1, 2, 3}), "sum", {copy = true})
    for _, res in ipairs(luray.get({a, b})) do
        t.eq(res[1], false)
        t.truthy(res[2]:find("ranks disagree"), res[2])
    end
    check_all(ranks, 10, "float32", "sum")
    close(ranks)
end)

t.test("a killed rank makes the others fail naming it (shm: at once; tcp: after timeout_s)",
    function()
        for _, transport in ipairs({"shm", "tcp"}) do
            local ranks = group(3, transport, {timeout_s = transport == "tcp" and 2 or 30})
            luray.kill(ranks[3])
            luray.sleep(0.2)
            local t0 = now()
            local refs = {}
            for k = 1, 2 do refs[k] = ranks[k].try:remote("barrier") end
            for k, res in ipairs(luray.get(refs)) do
                t.eq(res[1], false)
                if transport == "shm" then
                    t.truthy(res[2]:find("rank 2 %(pid %d+%) died"), res[2])
                elseif k == 1 then
                    t.truthy(res[2]:find("timed out after 2 s") and res[2]:find("rank 2"), res[2])
                end
            end
            t.truthy(now() - t0 < (transport == "shm" and 5 or 10), now() - t0)
            close(ranks)
        end
    end)

t.test("bad arguments are refused by name", function()
    t.raises(function() C.group{rank = 0, world_size = 1} end, "'id'")
    t.raises(function() C.group{id = "x", rank = 0, world_size = 1, transport = "udp"} end,
        "unknown transport 'udp'")
    t.raises(function() C.group{id = "x", rank = 0, world_size = 2, transport = "tcp"} end,
        "'addresses'")
    t.raises(function() C.group{id = "x", rank = 3, world_size = 2} end, "rank must be 0 to 1")
    local g <close> = C.group{id = new_id(), rank = 0, world_size = 1}
    t.raises(function() g:allreduce(luray.tensor({1, 2}, "int64")) end, "dtype int64")
    t.raises(function() g:allreduce(luray.tensor({1.0}), "median") end, "unknown op 'median'")
    t.raises(function() g:allreduce("x") end, "expected a tensor or a list")
    t.raises(function() g:broadcast(luray.tensor({1.0}), 1) end, "root must be")
    t.eq(g:allreduce(luray.tensor({1.5}), "mean"):totable(), {1.5})
    g:close()
    t.raises(function() g:barrier() end, "closed")
end)

t.done()
