-- wrk: GET one record from PocketBase (its viewRule is public; herald-vs-pocketbase.sh read)
wrk.method = "GET"
