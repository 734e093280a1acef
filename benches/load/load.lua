-- wrk script for the load benchmark: one scenario against one target.
--
--   wrk -t2 -c32 -d15s -s load.lua http://127.0.0.1:PORT -- TARGET SCENARIO DIR START THREADS
--
-- TARGET: registrar | pocketbase | ceiling (SCENARIO get, DIR unused). SCENARIO: get | list | search | create | patch | batch.
-- DIR: the files seed.py wrote for that target. START: the first value of the unique
-- counter (creates and patches need values no earlier run used; run.sh advances it by the
-- MAX_K this script prints). THREADS: wrk's -t, so threads can interleave the counter.
--
-- Reads use ids in a random order (a seeded shuffle per thread); requests are pre-built in
-- init() where they do not change, so the generator spends its time sending. At the end
-- done() prints one line: RESULT requests=… rps=… p50_us=… p99_us=… errors=… max_k=…

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local function lines(path)
  local out = {}
  for line in io.lines(path) do
    if line ~= "" then
      local row = {}
      for field in string.gmatch(line, "[^\t]+") do table.insert(row, field) end
      table.insert(out, row)
    end
  end
  return out
end

local function urlencode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local function shuffled(rows, seed)
  math.randomseed(seed)
  local out = {}
  for i, row in ipairs(rows) do out[i] = row end
  for i = #out, 2, -1 do
    local j = math.random(i)
    out[i], out[j] = out[j], out[i]
  end
  return out
end

local target, scenario, step
k = 0 -- global, so done() can read each thread's last value with thread:get
local headers, json_headers, patch_headers
local fixed = {}      -- pre-built requests, cycled
local ids, pool, offerings, create_template

-- Paths and bodies, per target.
local registrar = {
  get = function(id) return "/courseRegistrations/bench/" .. id end,
  list = function(student) return "/courseRegistrations/bench/student/" .. student .. "?limit=10" end,
  search = function(course, status, from, to)
    return "POST", "/courseRegistrations/bench/search?limit=10",
      string.format('{"course_id":["%s"],"status":["%s"],"date":["%s","%s"]}', course, status, from, to)
  end,
  create = "/courseRegistrations/bench",
  patch = function(id, n)
    return "/courseRegistrations/bench/" .. id,
      string.format('[{"op":"replace","path":"/job_title","value":"t%d"}]', n)
  end,
}

local records = "/api/collections/registrations/records"
local pocketbase = {
  get = function(id) return records .. "/" .. id end,
  list = function(student)
    return records .. "?perPage=10&skipTotal=1&filter=" .. urlencode("student_id='" .. student .. "'")
  end,
  search = function(course, status, from, to)
    local filter = string.format("course_id='%s' && status='%s' && date>='%s' && date<='%s'",
      course, status, from, to)
    return "GET", records .. "?perPage=10&skipTotal=1&filter=" .. urlencode(filter), nil
  end,
  create = records,
  patch = function(id, n)
    return records .. "/" .. id, string.format('{"job_title":"t%d"}', n)
  end,
}

function init(args)
  target, scenario = args[1], args[2]
  local dir = args[3]
  step = tonumber(args[5])
  k = tonumber(args[4]) + thread_index
  if target == "ceiling" then -- the bare actix-web handler: one fixed GET
    table.insert(fixed, wrk.format("GET", "/"))
    return
  end
  if target ~= "registrar" and target ~= "pocketbase" then error("unknown target " .. tostring(target)) end
  local api = (target == "registrar") and registrar or pocketbase
  local auth = io.open(dir .. "/auth"):read("*l")
  headers = { ["Authorization"] = auth }
  json_headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }
  patch_headers = target == "registrar"
    and { ["Authorization"] = auth, ["Content-Type"] = "application/json-patch+json" }
    or json_headers

  if scenario == "get" then
    for _, row in ipairs(shuffled(lines(dir .. "/registrations.txt"), thread_index + 1)) do
      table.insert(fixed, wrk.format("GET", api.get(row[1]), headers))
    end
  elseif scenario == "list" then
    for _, row in ipairs(shuffled(lines(dir .. "/students.txt"), thread_index + 1)) do
      table.insert(fixed, wrk.format("GET", api.list(row[1]), headers))
    end
  elseif scenario == "search" then
    local window = lines(dir .. "/window.txt")[1]
    for _, row in ipairs(shuffled(lines(dir .. "/searches.txt"), thread_index + 1)) do
      local method, path, body = api.search(row[1], row[2], window[1], window[2])
      table.insert(fixed, wrk.format(method, path, body and json_headers or headers, body))
    end
  elseif scenario == "create" then
    pool = lines(dir .. "/create_students.txt")
    offerings = lines(dir .. "/offerings.txt")
    create_template = io.open(dir .. "/create_template.json"):read("*a")
  elseif scenario == "patch" or scenario == "batch" then
    -- The same order in every thread: thread t takes blocks t, t + THREADS, … so two
    -- threads never patch the same records at once (until the list wraps around).
    ids = shuffled(lines(dir .. "/registrations.txt"), 42)
  else
    error("unknown scenario " .. tostring(scenario))
  end
end

local next_fixed = 0

function request()
  if #fixed > 0 then
    next_fixed = next_fixed % #fixed + 1
    return fixed[next_fixed]
  end
  local n = k
  k = k + step
  if scenario == "create" then
    -- A fresh (student, offering) pair for every n < pool × offerings.
    local student = pool[n % #pool + 1][1]
    local offering = offerings[math.floor(n / #pool) % #offerings + 1]
    local body = create_template
      :gsub("__STUDENT__", student)
      :gsub("__OFFERING__", offering[1])
      :gsub("__COURSE__", offering[2])
      :gsub("__COURSE_DATE__", offering[3])
      :gsub("__N__", tostring(n))
    local api = (target == "registrar") and registrar or pocketbase
    return wrk.format("POST", api.create, json_headers, body)
  elseif scenario == "patch" then
    local id = ids[n % #ids + 1][1]
    local api = (target == "registrar") and registrar or pocketbase
    local path, body = api.patch(id, n)
    return wrk.format("PATCH", path, patch_headers, body)
  else -- batch (registrar only): 100 patches of distinct records in one request
    local ops = {}
    for i = 0, 99 do
      local id = ids[(n * 100 + i) % #ids + 1][1]
      ops[#ops + 1] = string.format(
        '{"op":"patch","id":"%s","patch":[{"op":"replace","path":"/job_title","value":"b%d"}]}', id, n)
    end
    return wrk.format("POST", "/courseRegistrations/bench/batch", json_headers,
      '{"operations":[' .. table.concat(ops, ",") .. ']}')
  end
end

function done(summary, latency, requests)
  local max_k = 0
  for _, thread in ipairs(threads) do
    local used = thread:get("k")
    if used and used > max_k then max_k = used end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d bytes_per_response=%d "
      .. "errors=%d non2xx=%d max_k=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.requests > 0 and math.floor(summary.bytes / summary.requests) or 0,
    e.connect + e.read + e.write + e.timeout, e.status, max_k))
end
