-- wrk: GET one record from Herald, as admin (herald-vs-pocketbase.sh read)
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer bench-admin-key-0123456789abcdef"
