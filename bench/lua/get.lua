-- GET the URL given on the wrk command line; only the report is added.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
