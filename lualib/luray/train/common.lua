-- What the Trainer's frameworks share: the feature columns of a shard and checkpoint folders
-- that appear whole (written under a temporary name, then renamed).
local data = require("luray.data")

local M = {}
local fmt = string.format

-- feature_columns as given, else every column of the shard's schema but the label.
function M.features(cfg, shard)
    if cfg.feature_columns then return cfg.feature_columns end
    local schema = shard:schema()
    if schema == nil then error("train: the training shard is empty", 0) end
    local out = {}
    for _, n in ipairs(schema.names) do
        if n ~= cfg.label_column then out[#out + 1] = n end
    end
    return out
end

local function json_list(list)
    local parts = {}
    for i, s in ipairs(list) do parts[i] = fmt("%q", s) end
    return "[" .. table.concat(parts, ",") .. "]"
end

-- Writes <dir>/<name>: fill(tmp_folder) writes the framework's files, then the description
-- luray_checkpoint.json (framework, epoch, columns, extra fields) is added and the folder renamed.
-- Returns the final path.
function M.save_checkpoint(dir, name, desc, fill)
    local C = data.C
    assert(C.mkdirs(dir))
    local final = dir .. "/" .. name
    local tmp = final .. ".tmp"
    os.execute(fmt("rm -rf '%s'", tmp)) -- a half-written folder of a worker that died
    assert(C.mkdirs(tmp))
    fill(tmp)
    local fields = { fmt('"framework": %q', desc.framework), fmt('"epoch": %d', desc.epoch),
        fmt('"label_column": %q', desc.label_column),
        fmt('"feature_columns": %s', json_list(desc.feature_columns)) }
    if desc.loss then fields[#fields + 1] = fmt('"loss": %q', desc.loss) end
    local f = assert(io.open(tmp .. "/luray_checkpoint.json", "wb"))
    f:write("{" .. table.concat(fields, ", ") .. "}\n")
    f:close()
    os.execute(fmt("rm -rf '%s'", final))
    assert(os.rename(tmp, final))
    return final
end

-- The feature_columns list of a luray_checkpoint.json text.
function M.feature_columns(text)
    local out = {}
    local body = text:match('"feature_columns"%s*:%s*(%b[])') or "[]"
    for s in body:gmatch('"([^"]*)"') do out[#out + 1] = s end
    return out
end

return M
