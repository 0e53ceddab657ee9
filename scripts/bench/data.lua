-- Bench group "data" (BENCH.md, ours): luray.data on the CSV of gen_csv.lua, the same file the
-- pandas, Dask and Ray Data peers (peers/data_*.py) read, and a streaming run larger than the
-- store.
--
--   luray run data.lua CSV WORKDIR          csv_pipeline_seconds, csv_parse_mb_per_s,
--                                           map_batches_mb_per_s
--   luray run --object-store-memory 1000000000 data.lua stream CSV WORKDIR
--                                           data_streaming_peak_rss_mb (LURAY_BENCH_STREAM_GB,
--                                           default 5, times LURAY_BENCH_SCALE: the input size)
local luray = require("luray")
local data = require("luray.data")
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local B = dofile(dir .. "/lib/bench.lua")

local USAGE = "usage: data.lua CSV WORKDIR | data.lua stream CSV WORKDIR"

local function cluster_cpus()
    return math.max(1, math.floor((luray.cluster_resources() or {}).CPU or 1))
end

local function file_size(path)
    local f, err = io.open(path, "rb")
    if not f then error("cannot open " .. tostring(err), 0) end
    local n = f:seek("end")
    f:close()
    return n
end

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then error("cannot open " .. tostring(err), 0) end
    local s = f:read("a")
    f:close()
    return s
end

local function sh(cmd)
    local ok, how, code = os.execute(cmd)
    if not ok then error(string.format("'%s' failed (%s %s)", cmd, how, code), 0) end
end

-- A new output folder name below the work folder (the caller removes it, outside timed code).
local out_seq = 0
local function fresh_dir(workdir, name)
    out_seq = out_seq + 1
    return string.format("%s/%s-%d", workdir, name, out_seq)
end

-- Runs fn once to warm up, then B.runs times; emits the median seconds (lower is better).
local function seconds(name, fn, extra)
    local ok, err = pcall(function()
        B.log("%s: warm-up", name)
        fn()
        local runs = {}
        for i = 1, B.runs do
            collectgarbage()
            local t0 = B.now()
            fn()
            runs[i] = B.now() - t0
        end
        local v = B.median(runs)
        B.log("%s: %.4f s", name, v)
        B.emit(name, v, "s", runs, extra)
    end)
    if not ok then
        B.log("%s: FAILED: %s", name, tostring(err))
        B.failed = (B.failed or 0) + 1
    end
end

-- The BENCH.md pipeline. The filter is a batch function (a mask over the block in C), as Ray
-- Data's docs advise over a per-row filter; whole blocks per call (batch_size = false) as Ray's
-- map_batches and expressions take them.
local function pipeline(csv, out)
    data.read_csv(csv)
        :map_batches(function(b) return b:select(b.x > 0.5) end, { batch_size = false })
        :add_column("z", function(b) return b.x * b.y end)
        :groupby("cat"):mean("z")
        :write_csv(out)
end

-- The result has 20 groups, each a mean of x * y over x > 0.5: about 0.75 * 0.5.
local function check_pipeline_output(out)
    local files = {}
    local ls = io.popen("ls '" .. out .. "'")
    for name in ls:lines() do files[#files + 1] = out .. "/" .. name end
    ls:close()
    local groups = 0
    for _, f in ipairs(files) do
        local first = true
        for line in io.lines(f) do
            if first then
                first = false
            else
                local cat, mean = line:match("^([^,]+),([^,]+)$")
                mean = tonumber(mean)
                if not cat or not mean or math.abs(mean - 0.375) > 0.02 then
                    error("unexpected pipeline output line in " .. f .. ": " .. line, 0)
                end
                groups = groups + 1
            end
        end
    end
    if groups ~= 20 then error(string.format("pipeline wrote %d groups, not 20", groups), 0) end
end

local function csv_figures(csv, workdir)
    local nbytes = file_size(csv)
    local cpus = cluster_cpus()

    local first = fresh_dir(workdir, "pipeline")
    local ok, err = pcall(function()
        pipeline(csv, first)
        check_pipeline_output(first)
    end)
    sh("rm -rf '" .. first .. "'")
    if not ok then
        B.log("csv_pipeline_seconds: FAILED: %s", tostring(err))
        B.failed = (B.failed or 0) + 1
    else
        seconds("csv_pipeline_seconds", function()
            pipeline(csv, fresh_dir(workdir, "pipeline"))
        end, { cpus = cpus, file_bytes = nbytes })
        sh("rm -rf '" .. workdir .. "'/pipeline-*")
    end

    -- Parse: read + count, file bytes per second per CPU of the cluster.
    B.rate("csv_parse_mb_per_s", "MB/s", nbytes / 1e6 / cpus, function()
        local n = data.read_csv(csv):count()
        if n == 0 then error("read_csv counted no rows", 0) end
    end, { per_core = "true", cpus = cpus, file_bytes = nbytes })
end

-- Column arithmetic x * 2 + y over float64 blocks already in the store; MB of input columns
-- (x and y, 16 bytes a row) per second per CPU.
local function map_batches_figure()
    local rows = B.n(10000000)
    local cpus = cluster_cpus()
    local src = data.range(rows, { parallelism = 4 * cpus })
        :map_batches(function(b) return { x = b.id * 0.5, y = b.id * 0.25 } end,
            { batch_size = false })
        :materialize()
    local mb = rows * 16 / 1e6
    B.rate("map_batches_mb_per_s", "MB/s", mb / cpus, function(share)
        local n = src:map_batches(function(b) return { z = b.x * 2 + b.y } end,
            { batch_size = false }):count()
        if n ~= rows then error(string.format("map_batches gave %d rows, not %d", n, rows), 0) end
    end, { per_core = "true", cpus = cpus, rows = rows, blocks = 4 * cpus,
        input_bytes = rows * 16, expr = "x * 2 + y" })
end

-- ---------------------------------------------------------------- streaming peak memory

-- Samples the memory of the driver and every process below it (the node, when it runs as a
-- process, and the workers) every 0.1 s until the stop file appears, then prints the peaks of:
-- the total (private and file pages, Pss_Anon + Pss_File, plus the pages allocated in the
-- session's /dev/shm store files, which stay allocated whether or not a process maps them), the
-- summed Pss and the summed Rss (which counts a store page in every process that touched it);
-- and, at the end, the sum of each live process's VmHWM, an upper bound that no sample can miss.
-- Its own processes are left out.
local SAMPLER = [[
root=$1 stop=$2 self=$$
peak_total=0 peak_pss=0 peak_rss=0 peak_shm=0 peak_procs=0 samples=0
while [ ! -e "$stop" ]; do
    pids=$(ps -e -o pid=,ppid= | awk -v r="$root" -v s="$self" '
        { parent[$1] = $2 }
        END {
            for (p in parent) {
                q = p; d = 0
                while (q > 1 && d < 64 && q != s) {
                    if (q == r) { print p; break }
                    q = parent[q]; d++
                }
            }
        }')
    shm=0
    for f in $(for p in $pids; do cat /proc/$p/maps 2>/dev/null; done |
            awk '$6 ~ /^\/dev\/shm\// && $7 == "" { print $6 }' | sort -u); do
        kb=$(stat -c '%b %B' "$f" 2>/dev/null | awk '{ print int($1 * $2 / 1024) }')
        [ -n "$kb" ] && shm=$((shm + kb))
    done
    set -- $(for p in $pids; do cat /proc/$p/smaps_rollup 2>/dev/null; done | awk '
        /^Rss:/ { r += $2; n++ } /^Pss:/ { s += $2 } /^Pss_Shmem:/ { sh += $2 }
        /^Pss_Anon:/ { a += $2 } /^Pss_File:/ { f += $2 }
        END { print r + 0, s + 0, a + f, sh + 0, n + 0 }')
    rss=$1 pss=$2 private=$3 pss_shm=$4 procs=$5
    [ "$shm" -eq 0 ] && shm=$pss_shm
    total=$((private + shm))
    [ "$total" -gt "$peak_total" ] && peak_total=$total
    [ "$pss" -gt "$peak_pss" ] && peak_pss=$pss
    [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
    [ "$shm" -gt "$peak_shm" ] && peak_shm=$shm
    [ "$procs" -gt "$peak_procs" ] && peak_procs=$procs
    samples=$((samples + 1))
    sleep 0.1
done
hwm=$(for p in $pids; do cat /proc/$p/status 2>/dev/null; done |
    awk '/^VmHWM:/ { s += $2 } END { print s + 0 }')
echo "$peak_total $peak_pss $peak_rss $peak_shm $peak_procs $samples $hwm"
]]

-- The big input: the 1M-row file's body repeated (ids repeat; the data flow is what counts),
-- built once per work folder.
local function big_csv(csv, workdir, target)
    local path = string.format("%s/stream_%d.csv", workdir, target)
    local ok, f = pcall(io.open, path, "rb")
    if ok and f then
        local n = f:seek("end")
        f:close()
        if n >= target then return path, n end
    end
    local s = read_file(csv)
    local nl = s:find("\n", 1, true)
    if not nl then error(csv .. ": no header line", 0) end
    local header, body = s:sub(1, nl), s:sub(nl + 1)
    s = nil
    if #body == 0 then error(csv .. ": no rows", 0) end
    local out, err = io.open(path, "wb")
    if not out then error("cannot create " .. tostring(err), 0) end
    local n = #header
    out:write(header)
    while n < target do
        local okw, werr = out:write(body)
        if not okw then
            out:close()
            error("cannot write " .. path .. ": " .. tostring(werr), 0)
        end
        n = n + #body
    end
    out:close()
    return path, n
end

local function stream_figure(csv, workdir)
    -- 5 GB through a 1 GB store, as the Data issue asks: the run must stream.
    local gb = (tonumber(os.getenv("LURAY_BENCH_STREAM_GB") or "") or 5) * B.scale
    local target = math.floor(gb * 1e9)
    local store = (luray.cluster_resources() or {}).object_store_memory or 0
    B.log("data_streaming_peak_rss_mb: writing a %.2f GB CSV", target / 1e9)
    local big, nbytes = big_csv(csv, workdir, target)
    collectgarbage()
    collectgarbage()

    -- Start the workers first, so that the sample sees a running cluster, not its start.
    data.range(1000):count()
    local sampler_path = workdir .. "/sampler.sh"
    local stop = workdir .. "/sampler.stop"
    local f = assert(io.open(sampler_path, "wb"))
    f:write(SAMPLER)
    f:close()
    os.remove(stop)
    local self_pid = read_file("/proc/self/stat"):match("^(%d+)")
    local sampler = assert(io.popen(string.format("exec sh '%s' %s '%s'", sampler_path, self_pid,
        stop)))

    local out = fresh_dir(workdir, "stream")
    local t0 = B.now()
    local ok, err = pcall(function()
        data.read_csv(big)
            :map_batches(function(b) return b:select(b.x > 0.5) end, { batch_size = false })
            :write_csv(out)
    end)
    local dt = B.now() - t0
    local sf = io.open(stop, "wb")
    if sf then sf:close() end
    local line = sampler:read("a") or ""
    sampler:close()
    local written = 0
    local ls = io.popen("du -sb '" .. out .. "' 2>/dev/null")
    written = tonumber((ls:read("a") or ""):match("^(%d+)")) or 0
    ls:close()
    sh("rm -rf '" .. out .. "'")
    os.remove(stop)
    if not ok then
        B.log("data_streaming_peak_rss_mb: FAILED: %s", tostring(err))
        B.failed = (B.failed or 0) + 1
        return
    end
    local total, pss, rss, shm, procs, samples, hwm =
        line:match("^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)")
    if not total or tonumber(samples) == 0 then
        B.log("data_streaming_peak_rss_mb: FAILED: the memory sampler gave %q", line)
        B.failed = (B.failed or 0) + 1
        return
    end
    local mb = tonumber(total) / 1024
    B.log("data_streaming_peak_rss_mb: %.0f MB in total (summed Pss %.0f MB, summed Rss %.0f MB, "
        .. "store pages %.0f MB, summed VmHWM %.0f MB) for %.2f GB in %.1f s", mb,
        tonumber(pss) / 1024, tonumber(rss) / 1024, tonumber(shm) / 1024, tonumber(hwm) / 1024,
        nbytes / 1e9, dt)
    B.emit("data_streaming_peak_rss_mb", mb, "MB", nil, {
        measure = "peak over 0.1 s samples of the driver, node and workers' private and file " ..
            "pages (Pss_Anon + Pss_File) plus the pages allocated in the store's /dev/shm files",
        peak_pss_sum_mb = tonumber(pss) / 1024, peak_rss_sum_mb = tonumber(rss) / 1024,
        peak_store_pages_mb = tonumber(shm) / 1024, vmhwm_sum_mb = tonumber(hwm) / 1024,
        processes = tonumber(procs),
        samples = tonumber(samples), file_bytes = nbytes, written_bytes = written,
        store_bytes = store, file_to_store = store > 0 and nbytes / store or 0, seconds = dt,
        mb_per_s = nbytes / 1e6 / dt, goal_mb = 1500,
    })
end

-- ---------------------------------------------------------------- main

local a1, a2, a3 = arg[1], arg[2], arg[3]
local ok, err = pcall(function()
    if a1 == "stream" then
        if not a2 or not a3 then error(USAGE, 0) end
        stream_figure(a2, a3)
    else
        if not a1 or not a2 then error(USAGE, 0) end
        csv_figures(a1, a2)
        map_batches_figure()
    end
end)
if not ok then
    B.log("data: FAILED: %s", tostring(err))
    B.failed = (B.failed or 0) + 1
end
B.finish()
