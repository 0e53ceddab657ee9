-- luray.data: distributed, streaming datasets over columnar blocks.
--
-- A Dataset is a lazy plan. Running it turns the plan into a stream of block tasks: each task reads
-- or receives one block, applies the fused chain of per-block operations in C or in the user's Lua
-- functions, and puts the result in the object store. The driver keeps a bounded window of tasks in
-- flight, so a data set larger than the store streams through it. All-to-all operations (shuffle,
-- sort, repartition, map_groups, zip) materialize their input and run a map/reduce over it.
local luray = require("luray")
local C = require("luray._plugin.data")

local M = {}

local unpack = table.unpack
local fmt = string.format

-- ------------------------------------------------------------------ helpers

local registry = debug.getregistry()
local function is_block(v) return getmetatable(v) == registry["data.Block"] end
local function is_column(v) return getmetatable(v) == registry["data.Column"] end
local function is_tensor(v)
    local mt = getmetatable(v)
    return type(v) == "userdata" and mt ~= nil and mt.__name == "luray.Tensor"
end

local check_keys = require("luray._opts").check

local function check_fn(fn, where)
    if type(fn) ~= "function" then
        error(fmt("%s: expected a function, got %s", where, type(fn)), 3)
    end
end

local function name_list(v, where)
    if type(v) == "string" then return { v } end
    if type(v) ~= "table" or #v == 0 then
        error(where .. ": expected a column name or a list of names", 3)
    end
    for i, n in ipairs(v) do
        if type(n) ~= "string" then error(fmt("%s: name %d is a %s", where, i, type(n)), 3) end
    end
    return v
end

local function fn_label(fn)
    local info = debug.getinfo(fn, "S")
    local src = info.short_src or "?"
    return src:match("[^/]*$") .. ":" .. tostring(info.linedefined)
end

local function human(n)
    if n >= 1e9 then return fmt("%.1fG", n / 1e9) end
    if n >= 1e6 then return fmt("%.1fM", n / 1e6) end
    if n >= 1e3 then return fmt("%.1fk", n / 1e3) end
    return tostring(math.floor(n))
end

local function human_bytes(n)
    if n >= 2 ^ 30 then return fmt("%.1f GiB", n / 2 ^ 30) end
    if n >= 2 ^ 20 then return fmt("%.1f MiB", n / 2 ^ 20) end
    if n >= 2 ^ 10 then return fmt("%.1f KiB", n / 2 ^ 10) end
    return fmt("%d B", math.floor(n))
end

-- ------------------------------------------------------------------ batches

-- A batch is a Lua table of columns ({x = Column, ...}) with a few methods. Its column order is
-- kept beside it, so columns added in a UDF come out after the existing ones, in the order added.
local Batch = {}
local batch_order = setmetatable({}, { __mode = "k" })

Batch.__index = function(b, k) return Batch[k] end
Batch.__newindex = function(b, k, v)
    local order = batch_order[b]
    if order and v ~= nil then order[#order + 1] = k end
    rawset(b, k, v)
end
Batch.__len = function(b)
    for _, name in ipairs(batch_order[b] or {}) do
        local c = rawget(b, name)
        if c ~= nil then return #c end
    end
    for _, c in pairs(b) do return #c end
    return 0
end

local function new_batch(names, cols)
    local b = {}
    for i, n in ipairs(names) do b[n] = cols[i] end
    local order = {}
    for i, n in ipairs(names) do order[i] = n end
    batch_order[b] = order
    return setmetatable(b, Batch)
end

local function block_batch(block)
    return new_batch(block:names(), block:columns())
end

function Batch:names()
    local out, seen = {}, {}
    for _, n in ipairs(batch_order[self] or {}) do
        if rawget(self, n) ~= nil and not seen[n] then
            out[#out + 1] = n
            seen[n] = true
        end
    end
    local extra = {}
    for k in pairs(self) do
        if not seen[k] then extra[#extra + 1] = k end
    end
    table.sort(extra, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(extra) do out[#out + 1] = k end
    return out
end

function Batch:num_rows() return #self end

-- batch:select(mask) keeps the rows where mask is true. `batch:select(col > 0.5)` works too: Lua
-- turns the comparison into `true`, and the column remembered the mask it computed.
function Batch:select(mask)
    if mask == true then
        mask = C.take_last_mask()
        if mask == nil then
            error("batch:select: got true, not a mask; compare a column (col > 0.5) or use " ..
                "col:gt(0.5)", 2)
        end
    end
    if not is_column(mask) or mask:type() ~= "bool" then
        error("batch:select: expected a bool column (a mask), got " ..
            (is_column(mask) and (mask:type() .. " column") or type(mask)), 2)
    end
    local names = self:names()
    local cols = {}
    for i, n in ipairs(names) do cols[i] = rawget(self, n):select(mask) end
    return new_batch(names, cols)
end

function Batch:to_block()
    local names = self:names()
    local cols = {}
    for i, n in ipairs(names) do cols[i] = rawget(self, n) end
    return C.block(names, cols)
end

M.Batch = Batch

-- A Lua list of values as a column, with the type the values have.
local function list_column(list, where)
    local kind
    for i = 1, #list do
        local v = list[i]
        local t = math.type(v) or type(v)
        if t == "table" or is_tensor(v) then
            t = "tensor"
        end
        if kind == nil then kind = t
        elseif kind ~= t then
            if (kind == "integer" and t == "float") or (kind == "float" and t == "integer") then
                kind = "float"
            else
                error(fmt("%s: value %d is a %s, earlier values are %s", where, i, t, kind), 0)
            end
        end
    end
    local ctype = ({ integer = "int64", float = "float64", boolean = "bool", string = "string",
        tensor = "tensor" })[kind or "float"]
    if ctype == nil then error(fmt("%s: cannot make a column of %s values", where, kind), 0) end
    return C.column(ctype, list)
end

-- What a batch UDF returned, as a column of n rows.
local function as_column(v, n, where)
    if is_column(v) then
        if #v ~= n then error(fmt("%s: column has %d rows, the batch has %d", where, #v, n), 0) end
        return v
    end
    if is_tensor(v) then return C.column_from_tensor(v) end
    if type(v) == "table" then
        if #v ~= n then error(fmt("%s: list has %d values, the batch has %d", where, #v, n), 0) end
        return list_column(v, where)
    end
    local t = math.type(v) or type(v)
    if t == "integer" or t == "float" or t == "string" or t == "boolean" then
        local list = {}
        for i = 1, n do list[i] = v end
        return list_column(list, where)
    end
    error(fmt("%s: expected a column, tensor or list, got %s", where, type(v)), 0)
end

-- What a map_batches UDF returned, as a block.
local function batch_result_block(v, where)
    if is_block(v) then return v end
    if type(v) ~= "table" then
        error(fmt("%s: the function must return a batch (a table of columns), got %s", where,
            type(v)), 0)
    end
    local names
    if getmetatable(v) == Batch then
        names = v:names()
    else
        names = {}
        for k in pairs(v) do
            if type(k) ~= "string" then
                error(fmt("%s: the returned batch has a %s key; column names are strings", where,
                    type(k)), 0)
            end
            names[#names + 1] = k
        end
        table.sort(names)
    end
    local n
    for _, name in ipairs(names) do
        local c = rawget(v, name)
        if is_column(c) then n = #c break end
        if type(c) == "table" or is_tensor(c) then n = #c break end
    end
    local cols = {}
    for i, name in ipairs(names) do cols[i] = as_column(rawget(v, name), n or 1, where .. " column '" .. name .. "'") end
    return C.block(names, cols)
end

-- ------------------------------------------------------------------ worker side

local chain_cache, chain_order = {}, {}

-- The op chain of a stage is stored once in the object store; a worker decodes it once.
local function chain_of(holder)
    local ref = holder[1]
    local key = ref:hex()
    local chain = chain_cache[key]
    if chain == nil then
        chain = luray.get(ref)
        chain_cache[key] = chain
        chain_order[#chain_order + 1] = key
        if #chain_order > 32 then chain_cache[table.remove(chain_order, 1)] = nil end
    end
    return chain
end

local function rows_block(rows, names_hint, like, where)
    if #rows == 0 then
        -- No row tells the columns: keep the input's, else a block with none.
        return like ~= nil and like:slice(1, 0) or C.block({}, {})
    end
    local ok, b = pcall(C.from_rows, rows, names_hint)
    if not ok then error(where .. ": " .. tostring(b), 0) end
    return b
end

local function apply_batches(fn, block, batch_size, where)
    local n = block:num_rows()
    if batch_size == nil or n <= batch_size then
        return batch_result_block(fn(block_batch(block)), where)
    end
    local outs = {}
    for start = 1, n, batch_size do
        local piece = block:slice(start, math.min(batch_size, n - start + 1))
        outs[#outs + 1] = batch_result_block(fn(block_batch(piece)), where)
    end
    return C.concat(outs)
end

local op_apply = {}

function op_apply.map(op, block)
    local rows = block:rows()
    local out = {}
    for i = 1, #rows do
        local r = op.fn(rows[i])
        if type(r) ~= "table" then
            error(fmt("map: the function returned %s for a row; return a table (filter drops rows)",
                type(r)), 0)
        end
        out[i] = r
    end
    return rows_block(out, block:names(), block, "map")
end

function op_apply.filter(op, block)
    local rows = block:rows()
    local keep = {}
    for i = 1, #rows do keep[i] = op.fn(rows[i]) and true or false end
    return block:filter(C.column("bool", keep))
end

function op_apply.flat_map(op, block)
    local rows = block:rows()
    local out = {}
    for i = 1, #rows do
        local list = op.fn(rows[i])
        if type(list) ~= "table" then
            error(fmt("flat_map: the function returned %s for a row; return a list of rows",
                type(list)), 0)
        end
        for j = 1, #list do out[#out + 1] = list[j] end
    end
    return rows_block(out, block:names(), nil, "flat_map")
end

function op_apply.map_batches(op, block)
    return apply_batches(op.fn, block, op.batch_size, "map_batches")
end

function op_apply.add_column(op, block)
    local col = as_column(op.fn(block_batch(block)), block:num_rows(),
        "add_column('" .. op.name .. "')")
    return block:with_column(op.name, col)
end

function op_apply.select(op, block) return block:select(op.names) end
function op_apply.drop(op, block) return block:drop(op.names) end
function op_apply.rename(op, block) return block:rename(op.map) end
function op_apply.group_agg(op, block)
    if block:num_rows() == 0 and block:num_columns() == 0 then return block end
    return block:group_aggregate(op.keys, op.aggs)
end

function op_apply.write(op, block, seq)
    local path = fmt("%s/part-%06d.%s", op.dir, seq - 1, op.ext)
    if op.ext == "csv" then C.write_csv(block, path, op.opts) else C.write_json(block, path) end
    return nil, path
end

local function read_input(input)
    if type(input) ~= "table" then return input end -- a block, resolved from its ref
    local k = input.kind
    if k == "csv" then
        return C.read_csv(input.path, input.start, input.stop, input.schema, input.opts)
    elseif k == "json" then
        return C.read_json(input.path, input.start, input.stop, input.schema)
    elseif k == "range" then
        return C.range(input.start, input.n)
    end
    error("data: unknown input kind " .. tostring(k), 0)
end

-- One block task: read or receive a block, run the chain, return the block and what it cost.
function M._block_task(holder, seq, input)
    local chain = chain_of(holder)
    local stages = {}
    local t = C.now()
    local block = read_input(input)
    local now = C.now()
    stages[1] = { block:num_rows(), now - t, block:nbytes() }
    local file
    for i, op in ipairs(chain) do
        t = now
        block, file = op_apply[op.kind](op, block, seq)
        now = C.now()
        if block then
            stages[i + 1] = { block:num_rows(), now - t, block:nbytes() }
        else
            stages[i + 1] = { stages[i][1], now - t, 0 }
        end
    end
    local meta = {
        rows = block and block:num_rows() or 0,
        bytes = block and block:nbytes() or 0,
        stages = stages, rss = C.rss(), file = file,
    }
    return block, meta
end

-- All-to-all pieces, each a task of its own.
-- An empty block (maybe without columns, from a flat_map that emitted nothing) goes to every
-- part as it is.
local function empty_parts(block, n)
    local t = {}
    for i = 1, n do t[i] = block end
    return unpack(t)
end

function M._shuffle_map(block, n, seed)
    if block:num_rows() == 0 then return empty_parts(block, n) end
    return unpack(block:partition_random(n, seed))
end

function M._hash_map(block, keys, n)
    if block:num_rows() == 0 then return empty_parts(block, n) end
    return unpack(block:partition_hash(keys, n))
end

function M._bounds_map(block, key, bounds, desc)
    if block:num_rows() == 0 then return empty_parts(block, #bounds + 1) end
    return unpack(block:partition_bounds(key, bounds, desc))
end

local function concat_nonempty(blocks)
    local keep = {}
    for _, b in ipairs(blocks) do
        if b:num_rows() > 0 then keep[#keep + 1] = b end
    end
    if #keep == 0 then return blocks[1] end
    if #keep == 1 then return keep[1] end
    return C.concat(keep)
end

local function meta_of(block, t0)
    return { rows = block:num_rows(), bytes = block:nbytes(), rss = C.rss(),
        stages = { { block:num_rows(), C.now() - t0, block:nbytes() } } }
end

function M._shuffle_reduce(seed, ...)
    local t0 = C.now()
    local b = concat_nonempty({ ... }):shuffle(seed)
    return b, meta_of(b, t0)
end

function M._sort_reduce(keys, desc, ...)
    local t0 = C.now()
    local b = concat_nonempty({ ... }):sort(keys, desc)
    return b, meta_of(b, t0)
end

function M._sample(block, key, k, seed)
    if block:num_rows() == 0 then return {} end
    return block:sample(key, k, seed)
end

function M._groups_reduce(keys, fn, ...)
    local t0 = C.now()
    local b = concat_nonempty({ ... })
    local outs = {}
    if b:num_rows() > 0 then
        for _, g in ipairs(b:group_split(keys)) do
            local out = batch_result_block(fn(block_batch(g)), "map_groups")
            if out:num_rows() > 0 then outs[#outs + 1] = out end
        end
    end
    local r = #outs > 0 and concat_nonempty(outs) or b:slice(1, 0)
    return r, meta_of(r, t0)
end

-- Rows [start, start + n) of each argument block, concatenated: repartition and split.
function M._slices(ranges, ...)
    local t0 = C.now()
    local blocks = { ... }
    local parts = {}
    for i, r in ipairs(ranges) do parts[i] = blocks[i]:slice(r[1], r[2]) end
    local b = #parts == 1 and parts[1] or concat_nonempty(parts)
    return b, meta_of(b, t0)
end

-- A left block zipped with the right rows it lines up with (right slices as in _slices).
function M._zip(left, ranges, ...)
    local t0 = C.now()
    local blocks = { ... }
    local parts = {}
    for i, r in ipairs(ranges) do parts[i] = blocks[i]:slice(r[1], r[2]) end
    local right = #parts == 1 and parts[1] or C.concat(parts)
    local b = left:zip(right)
    return b, meta_of(b, t0)
end

local rf = {}
local function task(name, returns, fn)
    rf[name] = luray.remote({ num_returns = returns, name = "data." .. name }, fn)
end
task("block", 2, function(h, seq, input) return require("luray.data")._block_task(h, seq, input) end)
task("shuffle_reduce", 2, function(...) return require("luray.data")._shuffle_reduce(...) end)
task("sort_reduce", 2, function(...) return require("luray.data")._sort_reduce(...) end)
task("groups_reduce", 2, function(...) return require("luray.data")._groups_reduce(...) end)
task("slices", 2, function(...) return require("luray.data")._slices(...) end)
task("zip", 2, function(...) return require("luray.data")._zip(...) end)
task("sample", 1, function(...) return require("luray.data")._sample(...) end)

local multi_cache = {}
local function multi(kind, n)
    local key = kind .. n
    local f = multi_cache[key]
    if f == nil then
        local fns = {
            shuffle = function(...) return require("luray.data")._shuffle_map(...) end,
            hash = function(...) return require("luray.data")._hash_map(...) end,
            bounds = function(...) return require("luray.data")._bounds_map(...) end,
        }
        f = luray.remote({ num_returns = n, name = "data." .. kind .. "_map" }, fns[kind])
        multi_cache[key] = f
    end
    return f
end

-- ------------------------------------------------------------------ execution

-- One run of a plan: the window of tasks in flight, per-stage figures and the progress line.
local Exec = {}
Exec.__index = Exec

local function progress_enabled()
    local v = os.getenv("LURAY_DATA_PROGRESS")
    if v == "0" then return false end
    if v == "1" then return true end
    return C.isatty(2)
end

local function new_exec(label, min_window)
    local res = luray.cluster_resources()
    local cpus = math.max(1, math.floor(res.CPU or 1))
    local store = res.object_store_memory or 2 ^ 30
    local nodes = 0
    for _, n in ipairs(luray.nodes()) do
        if n.alive then nodes = nodes + 1 end
    end
    return setmetatable({
        label = label, cpus = cpus, nodes = nodes, min_window = min_window or 1,
        -- Blocks in flight may take a quarter of the store; the rest is for what consumers hold,
        -- all-to-all inputs and other jobs.
        budget = store / 4,
        stages = {}, t0 = C.now(), shown = 0, tty = progress_enabled(),
        src_total = 0, src_done = 0, rows_done = 0, inflight_bytes = 0, peak_inflight = 0,
    }, Exec)
end

function Exec:stage(name)
    local s = { name = name, rows = 0, blocks = 0, time = 0, bytes = 0, peak_rss = 0 }
    self.stages[#self.stages + 1] = s
    return s
end

function Exec:record(stages, meta)
    for i, st in pairs(stages) do
        local m = meta.stages[i]
        if m then
            st.rows = st.rows + m[1]
            st.time = st.time + m[2]
            st.bytes = st.bytes + m[3]
            st.blocks = st.blocks + 1
            if (meta.rss or 0) > st.peak_rss then st.peak_rss = meta.rss end
        end
    end
end

function Exec:window(bytes_seen, blocks_seen, cap)
    local w = math.max(self.cpus * 2, self.min_window)
    if blocks_seen > 0 then
        local avg = math.max(bytes_seen / blocks_seen, 1)
        w = math.min(w, math.max(1, math.floor(self.budget / avg)))
    end
    if cap then w = math.min(w, cap) end
    return math.max(1, w)
end

function Exec:progress(final)
    if not self.tty then return end
    local now = C.now()
    local elapsed = now - self.t0
    if final then
        if self.shown > 0 then io.stderr:write("\r\27[K") io.stderr:flush() end
        return
    end
    if elapsed < 1 or now - self.shown < 0.25 then return end
    self.shown = now
    local last = self.stages[#self.stages]
    local line = fmt("%s: %s rows, %s rows/s", self.label, human(self.rows_done),
        human(self.rows_done / elapsed))
    if self.src_total > 0 then
        line = line .. fmt(", %d/%d blocks read", self.src_done, self.src_total)
        if self.src_done > 0 and self.src_done < self.src_total then
            line = line .. fmt(", ETA %ds", math.ceil(elapsed * (self.src_total - self.src_done)
                / self.src_done))
        end
    end
    if last then line = line .. " [" .. last.name .. "]" end
    io.stderr:write("\r\27[K" .. line)
    io.stderr:flush()
end

function Exec:finish()
    self.wall = C.now() - self.t0
    self:progress(true)
end

local function release(item)
    local ref = item and rawget(item, "ref")
    if ref and not item.keep then ref:release() end
end

local function list_iter(list)
    local i = 0
    return function()
        i = i + 1
        return list[i]
    end
end

-- A stream of items ({ref=, rows=, bytes=}) from tasks started by submit(input) -> block_ref,
-- meta_ref, for each input next_input() gives, keeping a window of them in flight.
local function task_stream(exec, next_input, submit, stages, opts)
    opts = opts or {}
    local queue, head, tail = {}, 1, 0
    local exhausted = false
    local bytes_seen, blocks_seen = 0, 0
    local function fill()
        while not exhausted and tail - head + 1 < exec:window(bytes_seen, blocks_seen,
                opts.concurrency) do
            local input, owned = next_input()
            if input == nil then
                exhausted = true
                break
            end
            local b, m = submit(input)
            if owned then release(owned) end
            tail = tail + 1
            queue[tail] = { ref = b, meta_ref = m }
        end
    end
    return function()
        fill()
        if head > tail then return nil end
        local item = queue[head]
        queue[head] = nil
        head = head + 1
        local meta = luray.get(item.meta_ref)
        item.meta_ref:release()
        item.meta_ref = nil
        item.rows, item.bytes, item.file = meta.rows, meta.bytes, meta.file
        bytes_seen = bytes_seen + meta.bytes
        blocks_seen = blocks_seen + 1
        exec:record(stages, meta)
        if opts.source then exec.src_done = exec.src_done + 1 end
        if opts.counts then exec.rows_done = exec.rows_done + meta.rows end
        fill()
        exec:progress()
        return item
    end
end

local stream_of = {}
local function stream(exec, node) return stream_of[node.kind](exec, node) end

-- Every item of a node's stream, kept (for all-to-all operations).
local function collect(exec, node)
    local items = {}
    for it in stream(exec, node) do items[#items + 1] = it end
    return items
end

local function chain_holder(chain) return { luray.put(chain) } end

function stream_of.ops(exec, node)
    local base = node.parent
    local stages = {}
    local next_input
    local source = base.kind == "source"
    if source then
        stages[1] = exec:stage(base.name)
        exec.src_total = exec.src_total + #base.inputs
        next_input = list_iter(base.inputs)
    else
        local up = stream(exec, base)
        next_input = function()
            local it = up()
            if it == nil then return nil end
            return it.ref, it
        end
    end
    for i, op in ipairs(node.ops) do stages[i + 1] = exec:stage(op.label) end
    local holder = chain_holder(node.ops)
    local o = {}
    for k, v in pairs(node.opts and node.opts.resources or {}) do o[k] = v end
    -- Reads spread over the nodes, as Ray Data's do; later stages follow their input blocks.
    if source and exec.nodes > 1 then o.scheduling_strategy = "SPREAD" end
    local fn = next(o) and rf.block:options(o) or rf.block
    local seq = 0
    return task_stream(exec, next_input, function(input)
        seq = seq + 1
        return fn:remote(holder, seq, input)
    end, stages, { concurrency = node.opts and node.opts.concurrency, source = source,
        counts = true })
end

function stream_of.source(exec, node)
    return stream_of.ops(exec, { kind = "ops", parent = node, ops = {} })
end

function stream_of.refs(exec, node)
    local i = 0
    return function()
        i = i + 1
        local it = node.items[i]
        if it == nil then return nil end
        exec.rows_done = exec.rows_done + it.rows
        return { ref = it.ref, rows = it.rows, bytes = it.bytes, keep = true }
    end
end

function stream_of.limit(exec, node)
    local up = stream(exec, node.parent)
    local left = node.n
    local st = exec:stage("Limit(" .. node.n .. ")")
    return function()
        if left <= 0 then return nil end
        local it = up()
        if it == nil then return nil end
        if it.rows <= left then
            left = left - it.rows
            return it
        end
        local b, m = rf.slices:remote({ { 1, left } }, it.ref)
        release(it)
        local meta = luray.get(m)
        exec:record({ st }, meta)
        left = 0
        return { ref = b, rows = meta.rows, bytes = meta.bytes }
    end
end

function stream_of.union(exec, node)
    local k, cur = 0, nil
    return function()
        while true do
            if cur then
                local it = cur()
                if it then return it end
            end
            k = k + 1
            if node.parents[k] == nil then return nil end
            cur = stream(exec, node.parents[k])
        end
    end
end

-- A stream over tasks already submitted ({ref=, meta_ref=} each).
local function submitted_stream(exec, outs, stages)
    local i = 0
    return task_stream(exec, function()
        i = i + 1
        return outs[i]
    end, function(o) return o.ref, o.meta_ref end, stages, { counts = true })
end

local function new_seed() return math.random(1, 2 ^ 31 - 1) end

-- Runs n map tasks, each returning n_out parts; returns parts[i][j].
local function map_parts(items, kind, n_out, args_of)
    local parts = {}
    local f = multi(kind, n_out)
    for i, it in ipairs(items) do
        parts[i] = table.pack(f:remote(it.ref, args_of(i)))
        release(it)
    end
    return parts
end

local function reduce_all(exec, parts, n_out, name, submit)
    local outs = {}
    for j = 1, n_out do
        local args = {}
        for i = 1, #parts do args[i] = parts[i][j] end
        local b, m = submit(j, args)
        outs[j] = { ref = b, meta_ref = m }
    end
    return submitted_stream(exec, outs, { exec:stage(name) })
end

function stream_of.shuffle(exec, node)
    local items = collect(exec, node.parent)
    local n = #items
    if n == 0 then return list_iter({}) end
    local seed = node.seed or new_seed()
    local parts = map_parts(items, "shuffle", n, function(i) return n, seed + i end)
    return reduce_all(exec, parts, n, "RandomShuffle", function(j, args)
        return rf.shuffle_reduce:remote(seed * 31 + j, unpack(args))
    end)
end

local function sort_bounds(samples, n_out)
    local vals = {}
    for _, list in ipairs(samples) do
        for _, v in ipairs(list) do
            if v == v then vals[#vals + 1] = v end -- NaN never bounds a range
        end
    end
    if #vals == 0 or type(vals[1]) == "boolean" then return {} end
    table.sort(vals)
    local bounds = {}
    for k = 1, n_out - 1 do
        local v = vals[math.max(1, math.floor(k * #vals / n_out))]
        if bounds[#bounds] == nil or v > bounds[#bounds] then bounds[#bounds + 1] = v end
    end
    return bounds
end

function stream_of.sort(exec, node)
    local items = collect(exec, node.parent)
    local n = #items
    if n == 0 then return list_iter({}) end
    local key = node.keys[1]
    local sref = {}
    for i, it in ipairs(items) do sref[i] = rf.sample:remote(it.ref, key, 100, i) end
    local bounds = sort_bounds(luray.get(sref), n)
    local n_out = #bounds + 1
    local parts = map_parts(items, "bounds", n_out, function() return key, bounds, node.desc[1] end)
    return reduce_all(exec, parts, n_out, "Sort", function(_, args)
        return rf.sort_reduce:remote(node.keys, node.desc, unpack(args))
    end)
end

function stream_of.map_groups(exec, node)
    local items = collect(exec, node.parent)
    local n = #items
    if n == 0 then return list_iter({}) end
    local parts = map_parts(items, "hash", n, function() return node.keys, n end)
    return reduce_all(exec, parts, n, "MapGroups(" .. fn_label(node.fn) .. ")", function(_, args)
        return rf.groups_reduce:remote(node.keys, node.fn, unpack(args))
    end)
end

-- Submits, lazily and windowed, one slices task per output: pieces[k] = {ranges=, refs=}.
local function pieces_stream(exec, pieces, name)
    local st = { exec:stage(name) }
    return task_stream(exec, list_iter(pieces), function(p)
        return rf.slices:remote(p.ranges, unpack(p.refs))
    end, st, { counts = true })
end

-- Pieces covering global rows [lo, hi) of items (0-based, hi exclusive).
local function cover(items, starts, lo, hi)
    local ranges, refs = {}, {}
    for i, it in ipairs(items) do
        local s, e = starts[i], starts[i] + it.rows
        if e > lo and s < hi and it.rows > 0 then
            local a, b = math.max(s, lo), math.min(e, hi)
            ranges[#ranges + 1] = { a - s + 1, b - a }
            refs[#refs + 1] = it.ref
        end
    end
    return { ranges = ranges, refs = refs }
end

local function starts_of(items)
    local starts, total = {}, 0
    for i, it in ipairs(items) do
        starts[i] = total
        total = total + it.rows
    end
    return starts, total
end

function stream_of.repartition(exec, node)
    local items = collect(exec, node.parent)
    local starts, total = starts_of(items)
    local pieces = {}
    for k = 0, node.n - 1 do
        local lo, hi = total * k // node.n, total * (k + 1) // node.n
        local p = cover(items, starts, lo, hi)
        if #p.refs == 0 then p = cover(items, starts, 0, 0) end
        if #p.refs == 0 and items[1] then p = { ranges = { { 1, 0 } }, refs = { items[1].ref } } end
        if #p.refs > 0 then pieces[#pieces + 1] = p end
    end
    return pieces_stream(exec, pieces, "Repartition(" .. node.n .. ")")
end

-- An item that holds its block in this process; its ref is made (a put) only if someone asks.
local local_item_mt = {
    __index = function(t, k)
        if k ~= "ref" then return nil end
        local r = luray.put(t.block)
        rawset(t, "ref", r)
        return r
    end,
}

-- Shards of materialized blocks (split, train_test_split) are sliced where they are consumed,
-- without a task: a training worker that holds every CPU still reads its shard.
function stream_of.pieces(exec, node)
    local st = exec:stage(node.name or "Split")
    local i = 0
    return function()
        i = i + 1
        local p = node.pieces[i]
        if p == nil then return nil end
        local t0 = C.now()
        local parts = {}
        for k, r in ipairs(p.ranges) do parts[k] = luray.get(p.refs[k]):slice(r[1], r[2]) end
        local b = #parts == 1 and parts[1] or concat_nonempty(parts)
        local rows, bytes = b:num_rows(), b:nbytes()
        exec:record({ st }, { stages = { { rows, C.now() - t0, bytes } }, rss = C.rss() })
        exec.rows_done = exec.rows_done + rows
        return setmetatable({ block = b, rows = rows, bytes = bytes }, local_item_mt)
    end
end

function stream_of.zip(exec, node)
    local left = collect(exec, node.left)
    local right = collect(exec, node.right)
    local _, ltotal = starts_of(left)
    local rstarts, rtotal = starts_of(right)
    if ltotal ~= rtotal then
        error(fmt("zip: the datasets have %d and %d rows; zip needs equal counts", ltotal, rtotal), 0)
    end
    local outs, off = {}, 0
    for _, it in ipairs(left) do
        local p = cover(right, rstarts, off, off + it.rows)
        if #p.refs == 0 then p = { ranges = { { 1, 0 } }, refs = { right[1].ref } } end
        local b, m = rf.zip:remote(it.ref, p.ranges, unpack(p.refs))
        outs[#outs + 1] = { ref = b, meta_ref = m }
        off = off + it.rows
    end
    return submitted_stream(exec, outs, { exec:stage("Zip") })
end

-- Adds a per-block op to a node: fused into the node's chain when it is one with the same
-- resources, else a new stage over it.
local function same_opts(a, b)
    a, b = a or {}, b or {}
    if a.concurrency ~= b.concurrency then return false end
    local ra, rb = a.resources or {}, b.resources or {}
    for k, v in pairs(ra) do if rb[k] ~= v then return false end end
    for k, v in pairs(rb) do if ra[k] ~= v then return false end end
    return true
end

local function fuse(node, op, opts)
    if node.kind == "ops" and same_opts(node.opts, opts) then
        local ops = { unpack(node.ops) }
        ops[#ops + 1] = op
        return { kind = "ops", parent = node.parent, ops = ops, opts = node.opts }
    end
    return { kind = "ops", parent = node, ops = { op }, opts = opts }
end

-- Aggregations: a partial aggregate fused into each block task, combined on the driver.
local function aggregate_block(exec, node, keys, aggs)
    local child = fuse(node, { kind = "group_agg", keys = keys, aggs = aggs,
        label = "Aggregate(partial)" })
    local partials = {}
    for it in stream(exec, child) do
        local p = luray.get(it.ref)
        release(it)
        if p:num_columns() > 0 then partials[#partials + 1] = p end
    end
    if #partials == 0 then return nil end
    return C.group_combine(partials, keys, aggs)
end

function stream_of.agg(exec, node)
    local final = aggregate_block(exec, node.parent, node.keys, node.aggs)
    if final == nil then return list_iter({}) end
    return list_iter({ { ref = luray.put(final), rows = final:num_rows(), bytes = final:nbytes() } })
end

-- ------------------------------------------------------------------ Dataset

local Dataset = {}
Dataset.__index = Dataset
Dataset.__name = "luray.data.Dataset"
M.Dataset = Dataset

local last_exec = setmetatable({}, { __mode = "k" })

local function new_ds(node) return setmetatable({ _node = node }, Dataset) end

-- Runs the plan: returns an iterator over its items and the run's Exec.
function Dataset:_items(label, min_window)
    local exec = new_exec(label, min_window)
    last_exec[self] = exec
    local it = stream(exec, self._node)
    local done = false
    return function()
        if done then return nil end
        local item = it()
        if item == nil then
            done = true
            exec:finish()
        end
        return item
    end, exec
end

local function plan_names(node, out)
    out = out or {}
    local k = node.kind
    if k == "ops" then
        plan_names(node.parent, out)
        for _, op in ipairs(node.ops) do out[#out + 1] = op.label end
    elseif k == "source" then out[#out + 1] = node.name
    elseif k == "refs" then out[#out + 1] = fmt("Materialized(%d blocks)", #node.items)
    elseif k == "pieces" then out[#out + 1] = node.name
    elseif k == "union" then
        local parts = {}
        for i, p in ipairs(node.parents) do parts[i] = table.concat(plan_names(p), " -> ") end
        out[#out + 1] = "Union(" .. table.concat(parts, " | ") .. ")"
    elseif k == "zip" then
        out[#out + 1] = "Zip(" .. table.concat(plan_names(node.left), " -> ") .. " | " ..
            table.concat(plan_names(node.right), " -> ") .. ")"
    else
        plan_names(node.parent, out)
        out[#out + 1] = node.label
    end
    return out
end

Dataset.__tostring = function(self)
    return "Dataset(" .. table.concat(plan_names(self._node), " -> ") .. ")"
end

local function derive(self, node) return new_ds(node) end

local function add_op(self, op, opts) return derive(self, fuse(self._node, op, opts)) end

local function stage_opts(opts, where)
    local o = {}
    if opts.num_cpus ~= nil or opts.num_gpus ~= nil or opts.resources ~= nil then
        o.resources = { num_cpus = opts.num_cpus, num_gpus = opts.num_gpus,
            resources = opts.resources }
    end
    if opts.concurrency ~= nil then
        if math.type(opts.concurrency) ~= "integer" or opts.concurrency < 1 then
            error(where .. ": concurrency must be an integer >= 1", 3)
        end
        o.concurrency = opts.concurrency
    end
    return (o.resources or o.concurrency) and o or nil
end

-- ---- transforms

function Dataset:map(fn)
    check_fn(fn, "map")
    return add_op(self, { kind = "map", fn = fn, label = "Map(" .. fn_label(fn) .. ")" })
end

function Dataset:filter(fn)
    check_fn(fn, "filter")
    return add_op(self, { kind = "filter", fn = fn, label = "Filter(" .. fn_label(fn) .. ")" })
end

function Dataset:flat_map(fn)
    check_fn(fn, "flat_map")
    return add_op(self, { kind = "flat_map", fn = fn, label = "FlatMap(" .. fn_label(fn) .. ")" })
end

local map_batches_keys = { batch_size = true, concurrency = true, num_cpus = true,
    num_gpus = true, resources = true }

function Dataset:map_batches(fn, opts)
    check_fn(fn, "map_batches")
    opts = check_keys(opts, map_batches_keys, "map_batches")
    local bs = opts.batch_size
    if bs == nil then bs = 4096 end
    if bs == false then bs = nil
    elseif math.type(bs) ~= "integer" or bs < 1 then
        error("map_batches: batch_size must be an integer >= 1 (or false for whole blocks)", 2)
    end
    return add_op(self, { kind = "map_batches", fn = fn, batch_size = bs,
        label = "MapBatches(" .. fn_label(fn) .. ")" }, stage_opts(opts, "map_batches"))
end

function Dataset:add_column(name, fn)
    if type(name) ~= "string" or name == "" then error("add_column: expected a column name", 2) end
    check_fn(fn, "add_column")
    return add_op(self, { kind = "add_column", name = name, fn = fn,
        label = "AddColumn(" .. name .. ")" })
end

function Dataset:drop_columns(names)
    names = name_list(names, "drop_columns")
    return add_op(self, { kind = "drop", names = names,
        label = "DropColumns(" .. table.concat(names, ",") .. ")" })
end

function Dataset:select_columns(names)
    names = name_list(names, "select_columns")
    return add_op(self, { kind = "select", names = names,
        label = "SelectColumns(" .. table.concat(names, ",") .. ")" })
end

function Dataset:rename_columns(map)
    if type(map) ~= "table" or next(map) == nil then
        error("rename_columns: expected a table {old = new, ...}", 2)
    end
    for k, v in pairs(map) do
        if type(k) ~= "string" or type(v) ~= "string" or v == "" then
            error("rename_columns: names must be non-empty strings", 2)
        end
    end
    return add_op(self, { kind = "rename", map = map, label = "RenameColumns" })
end

function Dataset:random_shuffle(opts)
    opts = check_keys(opts, { seed = true }, "random_shuffle")
    if opts.seed ~= nil and math.type(opts.seed) ~= "integer" then
        error("random_shuffle: seed must be an integer", 2)
    end
    return derive(self, { kind = "shuffle", parent = self._node, seed = opts.seed,
        label = "RandomShuffle" })
end

function Dataset:sort(key, opts)
    local keys = name_list(key, "sort")
    local desc = {}
    if type(opts) == "boolean" then opts = { descending = opts } end
    opts = check_keys(opts, { descending = true }, "sort")
    local d = opts.descending
    for i = 1, #keys do
        if type(d) == "table" then desc[i] = d[i] and true or false else desc[i] = d and true or false end
    end
    return derive(self, { kind = "sort", parent = self._node, keys = keys, desc = desc,
        label = "Sort(" .. table.concat(keys, ",") .. ")" })
end

function Dataset:repartition(n)
    if math.type(n) ~= "integer" or n < 1 then error("repartition: n must be an integer >= 1", 2) end
    return derive(self, { kind = "repartition", parent = self._node, n = n,
        label = "Repartition(" .. n .. ")" })
end

function Dataset:limit(n)
    if math.type(n) ~= "integer" or n < 0 then error("limit: n must be an integer >= 0", 2) end
    return derive(self, { kind = "limit", parent = self._node, n = n, label = "Limit(" .. n .. ")" })
end

function Dataset:union(...)
    local parents = { self._node }
    for i, other in ipairs({ ... }) do
        if getmetatable(other) ~= Dataset then
            error(fmt("union: argument %d is not a Dataset", i), 2)
        end
        parents[#parents + 1] = other._node
    end
    return derive(self, { kind = "union", parents = parents })
end

function Dataset:zip(other)
    if getmetatable(other) ~= Dataset then error("zip: expected a Dataset", 2) end
    return derive(self, { kind = "zip", left = self._node, right = other._node })
end

-- ---- groupby

local GroupedData = {}
GroupedData.__index = GroupedData
M.GroupedData = GroupedData

function Dataset:groupby(key)
    return setmetatable({ ds = self, keys = name_list(key, "groupby") }, GroupedData)
end

local agg_ops = { count = true, sum = true, mean = true, min = true, max = true, std = true }

-- gd:aggregate({"mean", "z"}, {"count"}, ...): several aggregates in one pass.
function GroupedData:aggregate(...)
    local aggs = {}
    for i, a in ipairs({ ... }) do
        if type(a) ~= "table" or not agg_ops[a[1]] then
            error(fmt("aggregate: argument %d must be {op, column} with op one of count, sum, " ..
                "mean, min, max, std", i), 2)
        end
        if a[1] ~= "count" and type(a[2]) ~= "string" then
            error(fmt("aggregate: argument %d (%s) needs a column name", i, a[1]), 2)
        end
        aggs[i] = { a[1], a[2] }
    end
    if #aggs == 0 then error("aggregate: give at least one {op, column}", 2) end
    local labels = {}
    for i, a in ipairs(aggs) do labels[i] = a[1] .. "(" .. (a[2] or "") .. ")" end
    return derive(self.ds, { kind = "agg", parent = self.ds._node, keys = self.keys, aggs = aggs,
        label = "GroupBy(" .. table.concat(self.keys, ",") .. "):" .. table.concat(labels, ",") })
end

function GroupedData:count() return self:aggregate({ "count" }) end
for _, op in ipairs({ "sum", "mean", "min", "max", "std" }) do
    GroupedData[op] = function(self, col)
        if type(col) ~= "string" then error(op .. ": expected a column name", 2) end
        return self:aggregate({ op, col })
    end
end

function GroupedData:map_groups(fn)
    check_fn(fn, "map_groups")
    return derive(self.ds, { kind = "map_groups", parent = self.ds._node, keys = self.keys,
        fn = fn, label = "MapGroups(" .. fn_label(fn) .. ")" })
end

-- ---- consumers

function Dataset:materialize()
    local items = {}
    local next_item, exec = self:_items("materialize")
    for it in next_item do
        it.keep = true
        items[#items + 1] = it
    end
    local ds = new_ds({ kind = "refs", items = items })
    last_exec[ds] = exec
    return ds
end

function Dataset:count()
    local n = 0
    for it in self:_items("count") do
        n = n + it.rows
        release(it)
    end
    return n
end

local function fetch(item)
    local b = rawget(item, "block")
    if b ~= nil then return b end
    b = luray.get(item.ref)
    release(item)
    return b
end

function Dataset:take_all()
    local rows = {}
    for it in self:_items("take_all") do
        local b = fetch(it)
        for _, r in ipairs(b:rows()) do rows[#rows + 1] = r end
    end
    return rows
end

function Dataset:take(n)
    n = n or 20
    if math.type(n) ~= "integer" or n < 0 then error("take: n must be an integer >= 0", 2) end
    return self:limit(n):take_all()
end

local function show_value(v)
    if type(v) == "string" then return fmt("%q", v) end
    if math.type(v) == "float" then return fmt("%.6g", v) end
    return tostring(v)
end

function Dataset:show(n)
    local rows = self:take(n or 20)
    local names
    for _, r in ipairs(rows) do
        if not names then
            names = {}
            for k in pairs(r) do names[#names + 1] = k end
            table.sort(names)
        end
        local parts = {}
        for i, k in ipairs(names) do parts[i] = k .. " = " .. show_value(r[k]) end
        print("{" .. table.concat(parts, ", ") .. "}")
    end
end

local Schema = {}
Schema.__index = Schema
Schema.__tostring = function(s)
    local w = 6
    for _, n in ipairs(s.names) do w = math.max(w, #n) end
    local lines = { fmt("%-" .. w .. "s  %s", "Column", "Type"), fmt("%-" .. w .. "s  %s",
        "------", "----") }
    for i, n in ipairs(s.names) do
        lines[#lines + 1] = fmt("%-" .. w .. "s  %s", n, s.types[i])
    end
    return table.concat(lines, "\n")
end

local function make_schema(names, types)
    local s = setmetatable({ names = names, types = types }, Schema)
    for i, n in ipairs(names) do s[n] = types[i] end
    return s
end

local function block_schema(b)
    local names, types = {}, {}
    for i, c in ipairs(b:schema()) do
        names[i] = c.name
        types[i] = c.shape and ("tensor" .. "(" .. table.concat(c.shape, ",") .. ")") or c.type
    end
    return make_schema(names, types)
end

function Dataset:schema()
    local node = self._node
    if node.kind == "source" and node.schema then
        return make_schema(node.schema.names, node.schema.types)
    end
    local first
    for it in self:_items("schema") do
        if first == nil then first = fetch(it) else release(it) end
        if first then break end
    end
    if first == nil then return nil end
    return block_schema(first)
end

local function global_agg(self, op, col, where)
    if type(col) ~= "string" then error(where .. ": expected a column name", 3) end
    local exec = new_exec(where)
    last_exec[self] = exec
    local final = aggregate_block(exec, self._node, {}, { { op, col } })
    exec:finish()
    if final == nil or final:num_rows() == 0 then return nil end
    local v = final:column(op .. "(" .. col .. ")")[1]
    if v ~= v and op ~= "sum" then return nil end -- no values: NaN from the combine
    return v
end

for _, op in ipairs({ "sum", "mean", "min", "max", "std" }) do
    Dataset[op] = function(self, col) return global_agg(self, op, col, op) end
end

function Dataset:iter_rows()
    local next_item = self:_items("iter_rows")
    local rows, i = {}, 0
    return function()
        while i >= #rows do
            local it = next_item()
            if it == nil then return nil end
            rows, i = fetch(it):rows(), 0
        end
        i = i + 1
        return rows[i]
    end
end

function Dataset:iter_batches(opts)
    opts = check_keys(opts, { batch_size = true, prefetch_batches = true, drop_last = true },
        "iter_batches")
    local bs = opts.batch_size
    if bs == nil then bs = 256 end
    if bs == false then bs = nil
    elseif math.type(bs) ~= "integer" or bs < 1 then
        error("iter_batches: batch_size must be an integer >= 1 (or false for whole blocks)", 2)
    end
    local prefetch = opts.prefetch_batches or 1
    local next_item = self:_items("iter_batches", prefetch + 1)
    local buf, buf_rows, finished = {}, 0, false
    local function take(n)
        local parts, got = {}, 0
        while got < n do
            local b = buf[1]
            local want = n - got
            if b:num_rows() <= want then
                parts[#parts + 1] = b
                got = got + b:num_rows()
                table.remove(buf, 1)
            else
                parts[#parts + 1] = b:slice(1, want)
                buf[1] = b:slice(want + 1, b:num_rows() - want)
                got = n
            end
        end
        buf_rows = buf_rows - n
        return block_batch(#parts == 1 and parts[1] or C.concat(parts))
    end
    return function()
        while true do
            if bs and buf_rows >= bs then return take(bs) end
            if finished then
                if buf_rows > 0 and not opts.drop_last then return take(buf_rows) end
                return nil
            end
            local it = next_item()
            if it == nil then
                finished = true
            else
                local b = fetch(it)
                if b:num_rows() > 0 then
                    if bs == nil then return block_batch(b) end
                    buf[#buf + 1] = b
                    buf_rows = buf_rows + b:num_rows()
                end
            end
        end
    end
end

-- Datasets over rows [lo, hi) of materialized items.
local function slice_ds(items, starts, lo, hi, name)
    local p = cover(items, starts, lo, hi)
    local pieces = {}
    for i = 1, #p.refs do
        pieces[i] = { ranges = { p.ranges[i] }, refs = { p.refs[i] } }
    end
    return new_ds({ kind = "pieces", pieces = pieces, name = name, items = items })
end

function Dataset:split(n, opts)
    if math.type(n) ~= "integer" or n < 1 then error("split: n must be an integer >= 1", 2) end
    opts = check_keys(opts, { equal = true }, "split")
    local equal = opts.equal ~= false
    local m = self:materialize()
    local items = m._node.items
    local starts, total = starts_of(items)
    local out, lo = {}, 0
    for k = 1, n do
        local size
        if equal then size = total // n else size = total // n + ((k <= total % n) and 1 or 0) end
        out[k] = slice_ds(items, starts, lo, lo + size, fmt("Split(%d/%d)", k, n))
        lo = lo + size
    end
    return out
end

function Dataset:train_test_split(fraction, opts)
    if type(fraction) ~= "number" or fraction <= 0 or fraction >= 1 then
        error("train_test_split: fraction must be a number between 0 and 1 (exclusive)", 2)
    end
    opts = check_keys(opts, { shuffle = true, seed = true }, "train_test_split")
    local ds = self
    if opts.shuffle then ds = ds:random_shuffle({ seed = opts.seed }) end
    local m = ds:materialize()
    local items = m._node.items
    local starts, total = starts_of(items)
    local n_train = math.floor(total * (1 - fraction))
    return slice_ds(items, starts, 0, n_train, "TrainSplit"),
        slice_ds(items, starts, n_train, total, "TestSplit")
end

local function write(self, dir, ext, opts, where)
    if type(dir) ~= "string" or dir == "" then error(where .. ": expected a folder path", 3) end
    local ok, err = C.mkdirs(dir)
    if not ok then error(where .. ": " .. err, 3) end
    -- A write replaces the part files an earlier write left in the folder.
    for _, name in ipairs(C.list_dir(dir) or {}) do
        if name:match("^part%-%d+%." .. ext .. "$") then os.remove(dir .. "/" .. name) end
    end
    local ds = add_op(self, { kind = "write", dir = dir, ext = ext, opts = opts,
        label = "Write(" .. ext:upper() .. ")" })
    local files = {}
    local next_item, exec = ds:_items(where)
    for it in next_item do
        files[#files + 1] = it.file
        release(it)
    end
    last_exec[self] = exec
    return files
end

function Dataset:write_csv(dir, opts)
    opts = check_keys(opts, { delimiter = true }, "write_csv")
    return write(self, dir, "csv", opts, "write_csv")
end

function Dataset:write_json(dir)
    return write(self, dir, "json", nil, "write_json")
end

function Dataset:stats()
    local exec = last_exec[self]
    if exec == nil then return "Dataset(not yet run): " .. tostring(self) end
    local lines = {}
    for i, s in ipairs(exec.stages) do
        lines[#lines + 1] = fmt("Stage %d %s: %d blocks, %d rows, %.3f s in tasks, %s out, " ..
            "peak worker memory %s", i, s.name, s.blocks, s.rows, s.time, human_bytes(s.bytes),
            human_bytes(s.peak_rss))
    end
    lines[#lines + 1] = fmt("Total: %.3f s", exec.wall or (C.now() - exec.t0))
    return table.concat(lines, "\n")
end

-- Per-stage figures as a table, for programs: {{name=, rows=, blocks=, time=, bytes=,
-- peak_rss=}, ...} plus wall.
function Dataset:stats_table()
    local exec = last_exec[self]
    if exec == nil then return nil end
    return { stages = exec.stages, wall = exec.wall }
end

function Dataset:num_blocks()
    local node = self._node
    if node.kind == "refs" then return #node.items end
    if node.kind == "source" then return #node.inputs end
    return nil
end

-- ------------------------------------------------------------------ sources

local function cluster_cpus()
    local ok, res = pcall(luray.cluster_resources)
    return ok and math.max(1, math.floor(res.CPU or 1)) or 1
end

function M.range(n, opts)
    if math.type(n) ~= "integer" or n < 0 then error("data.range: n must be an integer >= 0", 2) end
    opts = check_keys(opts, { parallelism = true }, "data.range")
    local nblocks = opts.parallelism or math.max(1, math.min(n, math.max(cluster_cpus() * 2,
        (n + 1048575) // 1048576)))
    local inputs = {}
    for k = 0, nblocks - 1 do
        local lo, hi = n * k // nblocks, n * (k + 1) // nblocks
        if hi > lo then inputs[#inputs + 1] = { kind = "range", start = lo, n = hi - lo } end
    end
    return new_ds({ kind = "source", name = "Range(" .. n .. ")", inputs = inputs })
end

local function blocks_ds(blocks, name)
    local items = {}
    for i, b in ipairs(blocks) do
        items[i] = { ref = luray.put(b), rows = b:num_rows(), bytes = b:nbytes() }
    end
    local ds = new_ds({ kind = "refs", items = items, name = name })
    return ds
end

local function chunks(n, per)
    local out = {}
    local nb = math.max(1, math.min(cluster_cpus() * 2, n))
    per = math.max(per or 1, (n + nb - 1) // nb)
    for lo = 1, n, per do out[#out + 1] = { lo, math.min(per, n - lo + 1) } end
    return out
end

function M.from_items(list)
    if type(list) ~= "table" then error("data.from_items: expected a list", 2) end
    local rows = {}
    for i, v in ipairs(list) do
        rows[i] = type(v) == "table" and not is_tensor(v) and v or { item = v }
    end
    if #rows == 0 then return blocks_ds({}, "FromItems") end
    -- One block first, so the types come from every row and errors name the row in the list.
    local ok, whole = pcall(C.from_rows, rows)
    if not ok then error("data.from_items: " .. tostring(whole), 2) end
    local blocks = {}
    for _, c in ipairs(chunks(#rows, 1)) do blocks[#blocks + 1] = whole:slice(c[1], c[2]) end
    return blocks_ds(blocks, "FromItems")
end

function M.from_tensors(cols)
    if type(cols) ~= "table" or next(cols) == nil then
        error("data.from_tensors: expected a table {name = tensor, ...}", 2)
    end
    local names = {}
    for k in pairs(cols) do names[#names + 1] = k end
    table.sort(names)
    local list = {}
    for i, n in ipairs(names) do
        if not is_tensor(cols[n]) and not is_column(cols[n]) then
            error(fmt("data.from_tensors: '%s' is a %s, not a tensor", tostring(n),
                type(cols[n])), 2)
        end
        list[i] = is_column(cols[n]) and cols[n] or C.column_from_tensor(cols[n])
    end
    local ok, block = pcall(C.block, names, list)
    if not ok then error("data.from_tensors: " .. tostring(block), 2) end
    local blocks = {}
    for _, c in ipairs(chunks(block:num_rows(), 1)) do blocks[#blocks + 1] = block:slice(c[1], c[2]) end
    return blocks_ds(blocks, "FromTensors")
end

-- Block-level source: a list of data.Block values (or batches) as a dataset.
function M.from_blocks(blocks)
    local list = {}
    for i, b in ipairs(blocks) do
        list[i] = is_block(b) and b or batch_result_block(b, "data.from_blocks")
    end
    return blocks_ds(list, "FromBlocks")
end

local function glob_pattern(name)
    local p = name:gsub("[%^%$%(%)%%%.%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".")
    return "^" .. p .. "$"
end

-- The files a path, folder, glob or list of them names, in a stable order.
local function expand_paths(paths, where)
    if type(paths) == "string" then paths = { paths } end
    if type(paths) ~= "table" or #paths == 0 then
        error(where .. ": expected a path, a folder, a glob or a list of them", 3)
    end
    local files = {}
    for _, p in ipairs(paths) do
        if type(p) ~= "string" then error(where .. ": paths must be strings", 3) end
        if p:find("[%*%?]") then
            local dir, pat = p:match("^(.*)/([^/]*)$")
            if not dir then dir, pat = ".", p end
            if dir:find("[%*%?]") then error(where .. ": only the last part of a glob may have wildcards: " .. p, 3) end
            local names, err = C.list_dir(dir)
            if not names then error(where .. ": " .. err, 3) end
            local lp = glob_pattern(pat)
            local n0 = #files
            for _, n in ipairs(names) do
                local full = dir .. "/" .. n
                local st = C.stat(full)
                if n:match(lp) and st and st.type == "file" then files[#files + 1] = full end
            end
            if #files == n0 then error(where .. ": no file matches '" .. p .. "'", 3) end
        else
            local st, err = C.stat(p)
            if not st then error(where .. ": " .. err, 3) end
            if st.type == "dir" then
                local n0 = #files
                for _, n in ipairs(C.list_dir(p)) do
                    local full = p .. "/" .. n
                    local fst = C.stat(full)
                    if fst and fst.type == "file" and not n:match("^[%._]") then
                        files[#files + 1] = full
                    end
                end
                if #files == n0 then error(where .. ": folder '" .. p .. "' has no files", 3) end
            else
                files[#files + 1] = p
            end
        end
    end
    return files
end

-- Byte ranges of the files: about 32 MiB each, and enough of them to keep every CPU busy.
local function range_inputs(files, kind, schema, opts, block_bytes)
    local cpus = cluster_cpus()
    local sizes, total = {}, 0
    for i, f in ipairs(files) do
        sizes[i] = C.stat(f).size
        total = total + sizes[i]
    end
    local target = block_bytes or math.max(1 << 20, math.min(32 << 20, total // (cpus * 2) + 1))
    local inputs = {}
    for i, f in ipairs(files) do
        local n = math.max(1, (sizes[i] + target - 1) // target)
        if opts and opts.newlines_in_values then n = 1 end
        for k = 0, n - 1 do
            inputs[#inputs + 1] = { kind = kind, path = f, start = sizes[i] * k // n,
                stop = sizes[i] * (k + 1) // n, schema = schema, opts = opts }
        end
    end
    return inputs
end

local csv_keys = { delimiter = true, header = true, columns = true, quote = true,
    infer_rows = true, newlines_in_values = true, block_size = true }

function M.read_csv(paths, opts)
    opts = check_keys(opts, csv_keys, "data.read_csv")
    local files = expand_paths(paths, "data.read_csv")
    local copts = {}
    for k, v in pairs(opts) do if k ~= "block_size" then copts[k] = v end end
    local ok, schema = pcall(C.csv_infer, files[1], copts)
    if not ok then error(tostring(schema), 2) end
    local inputs = range_inputs(files, "csv", schema, copts, opts.block_size)
    return new_ds({ kind = "source", name = "ReadCSV", inputs = inputs, schema = schema })
end

function M.read_json(paths, opts)
    opts = check_keys(opts, { infer_rows = true, block_size = true }, "data.read_json")
    local files = expand_paths(paths, "data.read_json")
    local ok, schema = pcall(C.json_infer, files[1], { infer_rows = opts.infer_rows })
    if not ok then error(tostring(schema), 2) end
    local inputs = range_inputs(files, "json", schema, nil, opts.block_size)
    return new_ds({ kind = "source", name = "ReadJSON", inputs = inputs, schema = schema })
end

-- The C module, for code that works on blocks and columns directly.
M.C = C
M.column = C.column
M.block = C.block

require("luray.core").register_metatable(Dataset)

return M
