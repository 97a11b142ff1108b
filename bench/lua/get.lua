-- GET the URL given on the wrk command line, or the path and query in
-- $BENCH_GET_PATH, which keeps a link's secret off wrk's command line;
-- only the report is added.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local path = os.getenv("BENCH_GET_PATH")
if path and path ~= "" then
   wrk.path = path
end
