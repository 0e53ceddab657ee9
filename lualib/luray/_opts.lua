-- Option tables, checked the same way by every luray Lua module: unknown keys are refused with
-- the list of known ones, at the caller of the API function (error level 3).
local M = {}

function M.check(opts, allowed, where)
    if opts == nil then return {} end
    if type(opts) ~= "table" then error(where .. ": options must be a table", 3) end
    for k in pairs(opts) do
        if not allowed[k] then
            local names = {}
            for n in pairs(allowed) do names[#names + 1] = n end
            table.sort(names)
            error(string.format("%s: unknown option '%s' (expected one of: %s)", where,
                tostring(k), table.concat(names, ", ")), 3)
        end
    end
    return opts
end

return M
