-- GET one path per request, in order, from $BENCH_PATH_FILE (one path with
-- its query per line). Thread n of m takes lines n, n+m, ..., so no two
-- threads open the same link; a thread that runs out starts again from
-- its first line.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local threads_started = 0

function setup(thread)
   thread:set("thread_index", threads_started)
   threads_started = threads_started + 1
   thread:set("thread_count", tonumber(os.getenv("BENCH_THREADS")))
end

function init(args)
   paths = {}
   local line_number = 0
   for line in io.lines(os.getenv("BENCH_PATH_FILE")) do
      if line_number % thread_count == thread_index then
         paths[#paths + 1] = line
      end
      line_number = line_number + 1
   end
   next_path = 1
end

function request()
   local path = paths[next_path]
   next_path = next_path % #paths + 1
   return wrk.format("GET", path)
end
