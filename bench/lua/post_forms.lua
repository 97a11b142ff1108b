-- POST one prepared form body per request, in order, from $BENCH_BODY_FILE
-- (one urlencoded body per line). Thread n of m takes lines n, n+m, ...,
-- so no two threads send the same form. A thread that runs out of lines
-- starts again from its first, which the gateway answers as a repeated
-- post; bench/wrk.py compares the request count with the line count.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local threads_started = 0

function setup(thread)
   thread:set("thread_index", threads_started)
   threads_started = threads_started + 1
   thread:set("thread_count", tonumber(os.getenv("BENCH_THREADS")))
end

function init(args)
   bodies = {}
   local line_number = 0
   for line in io.lines(os.getenv("BENCH_BODY_FILE")) do
      if line_number % thread_count == thread_index then
         bodies[#bodies + 1] = line
      end
      line_number = line_number + 1
   end
   next_body = 1
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   wrk.headers["Origin"] = "null"
end

function request()
   local body = bodies[next_body]
   next_body = next_body % #bodies + 1
   return wrk.format(nil, nil, nil, body)
end
