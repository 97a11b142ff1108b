-- GET one path per request, in order, from $BENCH_PATH_FILE (one path with
-- its query per line). Each thread takes its own lines (thread_lines.lua),
-- so no two threads open the same link. A thread that runs out of lines
-- starts again from its first.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
dofile(os.getenv("BENCH_LUA_DIR") .. "/thread_lines.lua")

function init(args)
   paths = thread_lines(os.getenv("BENCH_PATH_FILE"))
   next_path = 1
end

function request()
   local path = paths[next_path]
   next_path = next_path % #paths + 1
   return wrk.format("GET", path)
end
