-- POST one prepared form body per request, in order, from $BENCH_BODY_FILE
-- (one urlencoded body per line). Each thread takes its own lines
-- (thread_lines.lua), so no two threads send the same form. A thread that
-- runs out of lines starts again from its first, and the gateway treats
-- those as repeated posts. bench/run.py compares the request count with
-- the line count.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_LUA_DIR") .. "/thread_lines.lua")

function init(args)
   bodies = thread_lines(os.getenv("BENCH_BODY_FILE"))
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
