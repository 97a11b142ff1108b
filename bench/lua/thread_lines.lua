-- Split the lines of a file among wrk's threads: thread n of m takes lines
-- n, n+m, ..., so no two threads send the same line. A script that uses it
-- calls thread_lines(path) in its init().
local threads_started = 0

function setup(thread)
   thread:set("thread_index", threads_started)
   threads_started = threads_started + 1
   thread:set("thread_count", tonumber(os.getenv("BENCH_THREADS")))
end

function thread_lines(path)
   local lines = {}
   local line_number = 0
   for line in io.lines(path) do
      if line_number % thread_count == thread_index then
         lines[#lines + 1] = line
      end
      line_number = line_number + 1
   end
   return lines
end
