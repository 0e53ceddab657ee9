-- Serve over real sockets: curl and a raw client (tests/tools/httpc) against the C proxy and
-- replicas that are actors: routing, JSON in and out, every error status, batching, metrics,
-- composition, autoscaling, a replica killed under load, timeouts and graceful shutdown.
local t = require("harness")
local serve = require("luray.serve")
luray.init{num_cpus = 2, object_store_memory = 128 * 1024 * 1024}

local build = os.getenv("LURAY_BUILD") or "build"
if build:sub(1, 1) ~= "/" then build = (os.getenv("PWD") or ".") .. "/" .. build end
local HTTPC = build .. "/tests/tools/httpc"
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)

local function sh(cmd)
    local f = io.popen(cmd)
    local out = f:read("a")
    f:close()
    return out
end

local port
local function url(path) return string.format("http://127.0.0.1:%d%s", port, path) end

-- status code and body of one request
local function curl(path, extra)
    local out = sh(string.format("curl -s -m 20 -o %s/body -w '%%{http_code}' %s '%s'", tmp,
        extra or "", url(path)))
    local f = io.open(tmp .. "/body")
    local body = f and f:read("a") or ""
    if f then f:close() end
    return tonumber(out), body
end

local function raw(bytes, opts)
    opts = opts or {}
    local f = io.open(tmp .. "/raw", "wb")
    f:write(bytes)
    f:close()
    return sh(string.format("%s 127.0.0.1 %d --pieces %d --pause-ms %d --wait-ms %d < %s/raw",
        HTTPC, port, opts.pieces or 1, opts.pause_ms or 0, opts.wait_ms or 2000, tmp))
end

local function metric(text, pattern)
    return tonumber(text:match(pattern .. " (%d+)")) or 0
end

local Echo = serve.deployment({ name = "echo", route_prefix = "/echo", actor_options = { num_cpus = 0.1 } }, {
    init = function(self, greeting) self.greeting = greeting end,
    call = function(self, req)
        if req.path == "/echo/fail" then error("the handler failed on purpose") end
        if req.path == "/echo/text" then return "plain " .. self.greeting end
        if req.path == "/echo/custom" then
            return { status = 201, headers = { ["X-Luray"] = "yes" }, body = { made = true } }
        end
        if req.path == "/echo/slow" then luray.sleep(tonumber(req.query.s or "0.5")) end
        return { greeting = self.greeting, method = req.method, path = req.path, query = req.query,
                 json = req.json, body = req.body, agent = req.headers["x-test"] }
    end,
})
local Deep = serve.deployment({ name = "deep", route_prefix = "/echo/deep", actor_options = { num_cpus = 0.1 } }, {
    call = function() return { deep = true } end,
})

local _, where = serve.run({ Echo:bind("hello"), Deep:bind() },
    { port = 0, request_read_timeout_s = 0.5, keep_alive_timeout_s = 1, max_body_bytes = 4096,
      max_header_bytes = 2048, request_timeout_s = 2 })
port = where.port

t.test("JSON: numbers round-trip in the fewest digits; what cannot be sent says where", function()
    t.eq(serve.json_encode({ 0.1, 1 / 3, 0.88250112533569336, 3, -2 }),
        "[0.1,0.3333333333333333,0.8825011253356934,3,-2]")
    for _, v in ipairs({ 0.1, 1 / 3, 1e-7, 123456.789, 2 ^ -1074, 1.7976931348623157e308 }) do
        t.eq(serve.json_decode(serve.json_encode({ v }))[1], v)
    end
    t.eq(serve.json_encode({ a = { "x\"\n" } }), '{"a":["x\\"\\n"]}')
    t.eq(serve.json_encode({ 0 / 0, math.huge }), "[null,null]")
    t.raises(function() serve.json_encode({ items = { 1, 2, print } }) end,
        "value.items%[3%]: a function cannot be sent as JSON")
    local cyc = {}
    cyc.self = cyc
    t.raises(function() serve.json_encode(cyc) end, "deeper than 64")
    t.raises(function() serve.json_decode("{oops") end, "invalid JSON at byte")
end)

t.test("routing by the longest prefix; unknown paths get a JSON 404", function()
    local code, body = curl("/echo/x?a=1&b=two%20words", "-H 'X-Test: abc'")
    t.eq(code, 200)
    local v = serve.json_decode(body)
    t.eq(v.greeting, "hello")
    t.eq(v.path, "/echo/x")
    t.eq(v.query, { a = "1", b = "two words" })
    t.eq(v.agent, "abc")
    code, body = curl("/echo/deep/more")
    t.eq(code, 200)
    t.eq(serve.json_decode(body), { deep = true })
    code, body = curl("/echoes")
    t.eq(code, 404)
    t.truthy(serve.json_decode(body).error:find("/echoes", 1, true), body)
end)

t.test("JSON in and out, strings, and full responses", function()
    local code, body = curl("/echo", "-X POST -H 'Content-Type: application/json' "
        .. "-d '{\"features\": [1, 2.5, -3], \"id\": \"x\"}'")
    t.eq(code, 200)
    local v = serve.json_decode(body)
    t.eq(v.json, { features = { 1, 2.5, -3 }, id = "x" })
    t.eq(v.method, "POST")
    code, body = curl("/echo/text")
    t.eq(code, 200)
    t.eq(body, "plain hello")
    local head = sh(string.format("curl -s -i '%s'", url("/echo/custom")))
    t.truthy(head:find("HTTP/1.1 201", 1, true), head)
    t.truthy(head:find("X-Luray: yes", 1, true), head)
    t.truthy(head:find('{"made":true}', 1, true), head)
end)

t.test("a chunked request body arrives whole", function()
    local code, body = curl("/echo", "-X POST -H 'Transfer-Encoding: chunked' "
        .. "-H 'Content-Type: text/plain' --data-binary 'chunked body here'")
    t.eq(code, 200)
    t.eq(serve.json_decode(body).body, "chunked body here")
end)

t.test("a handler that raises gets a 500 with its message; the replica keeps serving", function()
    local code, body = curl("/echo/fail")
    t.eq(code, 500)
    t.truthy(serve.json_decode(body).error:find("failed on purpose", 1, true), body)
    code = curl("/echo/x")
    t.eq(code, 200)
end)

t.test("bad input: invalid JSON 400, body over the limit 413, headers over it 431", function()
    local code, body = curl("/echo", "-X POST -H 'Content-Type: application/json' -d '{oops'")
    t.eq(code, 400)
    t.truthy(serve.json_decode(body).error:find("not valid JSON", 1, true), body)
    local out = raw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" .. string.rep("z", 5000))
    t.truthy(out:find("HTTP/1.1 413", 1, true), out)
    out = raw("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. string.rep("800\r\n" .. string.rep("y", 0x800) .. "\r\n", 3) .. "0\r\n\r\n")
    t.truthy(out:find("HTTP/1.1 413", 1, true), out)
    code = curl("/echo", "-H 'X-Big: " .. string.rep("a", 4000) .. "'")
    t.eq(code, 431)
end)

t.test("malformed HTTP gets 400 and the connection closes; random bytes change nothing", function()
    local out = raw("THIS IS NOT HTTP\r\n\r\n")
    t.truthy(out:find("HTTP/1.1 400", 1, true), out)
    t.truthy(out:find("[closed]", 1, true), out)
    math.randomseed(7)
    for _ = 1, 20 do
        local junk = {}
        for i = 1, math.random(1, 300) do junk[i] = string.char(math.random(0, 255)) end
        raw(table.concat(junk), { wait_ms = 300 })
    end
    t.eq(curl("/echo/x"), 200)
end)

t.test("keep-alive and pipelining: three requests on one connection, answered in order", function()
    local req = "GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/text HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "GET /echo/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    local out = raw(req)
    local a = out:find('"path":"/echo/1"', 1, true)
    local b = out:find("plain hello", 1, true)
    local c = out:find('"path":"/echo/3"', 1, true)
    t.truthy(a and b and c and a < b and b < c, out)
    t.truthy(out:find("[closed]", 1, true), out)
    -- sent a byte at a time, the same request still parses
    out = raw("GET /echo/bytes HTTP/1.1\r\nHost: x\r\n\r\n", { pieces = 40, pause_ms = 2, wait_ms = 500 })
    t.truthy(out:find('"path":"/echo/bytes"', 1, true), out)
    t.truthy(out:find("[open]", 1, true), out)
end)

t.test("a slow client gets 408; an idle keep-alive connection is closed", function()
    local out = raw("GET /echo/x HTTP/1.1\r\nHo", { wait_ms = 3000 })
    t.truthy(out:find("HTTP/1.1 408", 1, true), out)
    t.truthy(out:find("[closed]", 1, true), out)
    out = raw("GET /echo/x HTTP/1.1\r\nHost: x\r\n\r\n", { wait_ms = 3000 })
    t.truthy(out:find("HTTP/1.1 200", 1, true), out)
    t.truthy(out:find("[closed]", 1, true), "closed after the idle timeout: " .. out)
end)

t.test("HEAD gets the headers only; an unknown HTTP version is refused", function()
    local out = raw("HEAD /echo/text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    t.truthy(out:find("HTTP/1.1 200", 1, true), out)
    t.truthy(out:find("Content-Length: 11", 1, true), out)
    t.eq(out:find("plain hello", 1, true), nil, out)
    out = raw("GET /echo/x HTTP/3.0\r\nHost: x\r\n\r\n")
    t.truthy(out:find("HTTP/1.1 505", 1, true) or out:find("HTTP/1.1 400", 1, true), out)
    t.truthy(out:find("[closed]", 1, true), out)
end)

t.test("a replica that does not answer within request_timeout_s gets a 504", function()
    local Sleepy = serve.deployment({ name = "sleepy", route_prefix = "/sleepy",
        actor_options = { num_cpus = 0.1 } }, { call = function() luray.sleep(3) return 1 end })
    serve.run(Sleepy:bind())
    local t0 = require("luray.core").now()
    local code, body = curl("/sleepy")
    t.eq(code, 504, body)
    t.truthy(require("luray.core").now() - t0 < 2.9)
    serve.delete("sleepy")
end)

t.test("health and metrics count requests by deployment and status", function()
    local code, body = curl("/-/healthz")
    t.eq(code, 200)
    t.eq(serve.json_decode(body), { status = "ok" })
    local _, before = curl("/-/metrics")
    for _ = 1, 3 do curl("/echo/x") end
    curl("/echo/fail")
    local _, after = curl("/-/metrics")
    local ok = 'luray_serve_requests_total{deployment="echo",status="200"}'
    local err = 'luray_serve_errors_total{deployment="echo",status="500"}'
    t.eq(metric(after, ok:gsub("%p", "%%%0")) - metric(before, ok:gsub("%p", "%%%0")), 3)
    t.eq(metric(after, err:gsub("%p", "%%%0")) - metric(before, err:gsub("%p", "%%%0")), 1)
    t.truthy(after:find('luray_serve_request_latency_seconds_bucket{deployment="echo",le="+Inf"}', 1, true))
    t.truthy(after:find('luray_serve_replicas{deployment="echo"} 1', 1, true), after)
    t.truthy(after:find('luray_serve_queue_length{deployment="deep"} 0', 1, true), after)
end)

t.test("back-pressure: 503 when every replica and the queue are full", function()
    local Busy = serve.deployment({ name = "busy", actor_options = { num_cpus = 0.1 }, route_prefix = "/busy", max_ongoing_requests = 1,
        max_queued_requests = 1 }, { call = function() luray.sleep(0.6) return { ok = true } end })
    serve.run(Busy:bind())
    local cmd = {}
    for i = 1, 5 do
        cmd[#cmd + 1] = string.format("curl -s -m 20 -o /dev/null -w '%%{http_code}\\n' '%s' > %s/c%d &",
            url("/busy"), tmp, i)
    end
    os.execute("(" .. table.concat(cmd, " ") .. " wait)")
    local codes = {}
    for i = 1, 5 do
        local f = io.open(tmp .. "/c" .. i)
        local c = tonumber(f:read("l"))
        f:close()
        codes[c] = (codes[c] or 0) + 1
    end
    t.eq(codes[200], 2, t.show(codes))
    t.eq(codes[503], 3, t.show(codes))
    serve.delete("busy")
    t.eq(curl("/busy"), 404)
end)

t.test("dynamic batching gathers concurrent requests", function()
    local Batch = serve.deployment({ name = "batch", actor_options = { num_cpus = 0.1 }, route_prefix = "/batch", max_batch_size = 8,
        batch_wait_timeout_s = 0.2, max_ongoing_requests = 16 }, {
        batch = function(self, reqs)
            local out = {}
            for i, r in ipairs(reqs) do out[i] = { n = #reqs, x = tonumber(r.query.x) * 2 } end
            return out
        end,
    })
    serve.run(Batch:bind())
    local cmd = {}
    for i = 1, 8 do
        cmd[#cmd + 1] = string.format("curl -s -m 20 '%s' > %s/b%d &", url("/batch?x=" .. i), tmp, i)
    end
    os.execute("(" .. table.concat(cmd, " ") .. " wait)")
    local biggest = 0
    for i = 1, 8 do
        local f = io.open(tmp .. "/b" .. i)
        local v = serve.json_decode(f:read("a"))
        f:close()
        t.eq(v.x, 2 * i)
        biggest = math.max(biggest, v.n)
    end
    t.truthy(biggest > 1, "largest batch " .. biggest)
    -- a batch handler that returns the wrong number of answers fails its requests, not the replica
    local Bad = serve.deployment({ name = "badbatch", actor_options = { num_cpus = 0.1 }, route_prefix = "/badbatch" }, {
        batch = function() return {} end })
    serve.run(Bad:bind())
    local code, body = curl("/badbatch")
    t.eq(code, 500)
    t.truthy(body:find("returned 0 results for 1", 1, true), body)
    serve.delete("badbatch")
end)

t.test("composition: a deployment calls another through its handle", function()
    local Adder = serve.deployment({ name = "adder", actor_options = { num_cpus = 0.1 } }, {
        init = function(self, k) self.k = k end,
        call = function(self, x) return x + self.k end,
    })
    local Front = serve.deployment({ name = "front", actor_options = { num_cpus = 0.1 }, route_prefix = "/front" }, {
        init = function(self) self.adder = require("luray.serve").get_deployment_handle("adder") end,
        call = function(self, req)
            return { sum = luray.get(self.adder:remote(tonumber(req.query.x))) }
        end,
    })
    serve.run({ Front:bind(), Adder:bind(100) })
    local code, body = curl("/front?x=5")
    t.eq(code, 200, body)
    t.eq(serve.json_decode(body), { sum = 105 })
    t.eq(luray.get(serve.get_deployment_handle("adder"):remote(1)), 101)
    t.eq(serve.status().deployments.adder.route_prefix, false)
    serve.delete("front")
    serve.delete("adder")
end)

t.test("a bad deployment fails serve.run with the replica's error", function()
    local Broken = serve.deployment({ name = "broken", actor_options = { num_cpus = 0.1 }, route_prefix = "/broken" }, {
        init = function() error("cannot load the model") end,
        call = function() return 1 end,
    })
    t.raises(function() serve.run(Broken:bind()) end, "cannot load the model")
    serve.delete("broken")
    t.raises(function() serve.deployment({ name = "x" }, { nothing = 1 }) end, "call")
    t.raises(function() serve.deployment({ nme = "x" }, { call = print }) end, "unknown option 'nme'")
    t.raises(function() serve.run(Echo:bind("x"), { port = port + 1 }) end, "already listens")
    t.raises(function() serve.run({ Echo:bind("x"), Echo:bind("y") }) end, "two deployments")
    t.raises(function() serve.run(Echo:bind("x"), { prot = 1 }) end, "unknown option 'prot'")
end)

t.test("a replica killed under load is replaced and its requests retried", function()
    local Pair = serve.deployment({ name = "pair", route_prefix = "/pair", num_replicas = 2,
        actor_options = { num_cpus = 0 } }, {
        call = function(self, req) luray.sleep(0.02) return { pid = require("luray._plugin.serve").getpid() } end,
    })
    serve.run(Pair:bind())
    local st = serve.status().deployments.pair
    t.eq(st.replicas, 2)
    local victim = st.replica_list[1].pid
    -- 4 clients x 40 requests each while one replica is killed
    local cmd = {}
    for i = 1, 4 do
        cmd[#cmd + 1] = string.format("(for k in $(seq 40); do curl -s -m 20 -o /dev/null "
            .. "-w '%%{http_code}\\n' '%s'; done > %s/k%d) &", url("/pair"), tmp, i)
    end
    local f = io.popen("(" .. table.concat(cmd, " ") .. " wait; echo finished)")
    luray.sleep(0.4)
    os.execute("kill -9 " .. victim)
    local tail = f:read("a")
    f:close()
    t.truthy(tail:find("finished", 1, true))
    local counts = {}
    for i = 1, 4 do
        for line in io.lines(tmp .. "/k" .. i) do counts[line] = (counts[line] or 0) + 1 end
    end
    t.eq(counts["200"], 160, t.show(counts))
    local deadline = require("luray.core").now() + 20
    repeat
        st = serve.status().deployments.pair
        luray.sleep(0.1)
    until (st.replicas == 2 and st.restarts >= 1) or require("luray.core").now() > deadline
    t.eq(st.replicas, 2)
    t.truthy(st.restarts >= 1, t.show(st))
    for _, r in ipairs(st.replica_list) do t.ne(r.pid, victim) end
    serve.delete("pair")
end)

t.test("autoscaling goes up under load and back down after", function()
    local Auto = serve.deployment({ name = "auto", route_prefix = "/auto", max_ongoing_requests = 2,
        autoscaling = { min_replicas = 1, max_replicas = 3, target_ongoing_requests = 1,
                        upscale_delay_s = 0, downscale_delay_s = 0.5 },
        actor_options = { num_cpus = 0 } }, {
        call = function() luray.sleep(0.05) return { ok = true } end,
    })
    serve.run(Auto:bind())
    t.eq(serve.status().deployments.auto.target_replicas, 1)
    local cmd = {}
    for i = 1, 6 do
        cmd[#cmd + 1] = string.format("(for k in $(seq 30); do curl -s -m 20 -o /dev/null '%s'; "
            .. "done) &", url("/auto"))
    end
    local f = io.popen("(" .. table.concat(cmd, " ") .. " wait; echo finished)")
    local peak = 1
    local deadline = require("luray.core").now() + 30
    while require("luray.core").now() < deadline do
        local st = serve.status().deployments.auto
        peak = math.max(peak, st.replicas)
        if peak >= 3 then break end
        luray.sleep(0.1)
    end
    f:read("a")
    f:close()
    t.truthy(peak >= 2, "peak replicas " .. peak)
    deadline = require("luray.core").now() + 20
    local st
    repeat
        st = serve.status().deployments.auto
        luray.sleep(0.2)
    until st.replicas == 1 and st.draining == 0 or require("luray.core").now() > deadline
    t.eq(st.replicas, 1, t.show(st))
    serve.delete("auto")
end)

t.test("a proxy whose process dies is started again on the same port", function()
    local before = serve.status().proxy
    os.execute("kill -9 " .. before.pid)
    local deadline = require("luray.core").now() + 20
    local code
    repeat
        luray.sleep(0.1)
        code = curl("/echo/again")
    until code == 200 or require("luray.core").now() > deadline
    t.eq(code, 200)
    local after = serve.status().proxy
    t.eq(after.port, before.port)
    t.ne(after.pid, before.pid)
end)

t.test("the access log has a line per request", function()
    local log = serve.status().proxy.access_log
    curl("/echo/logged")
    luray.sleep(0.2)
    local text = sh("cat '" .. log .. "'")
    t.truthy(text:find('"GET /echo/logged" 200', 1, true), text:sub(-400))
end)

t.test("graceful shutdown answers requests in flight, then the port is closed", function()
    local f = io.popen(string.format("curl -s -m 20 -w ' %%{http_code}' '%s'", url("/echo/slow?s=0.6")))
    luray.sleep(0.2)
    serve.shutdown(5)
    local out = f:read("a")
    f:close()
    t.truthy(out:find("200$"), out)
    local code = curl("/echo/x")
    t.eq(code, 0)
    t.eq(serve.status().deployments, {})
end)

os.execute("rm -rf " .. tmp)
t.done()
