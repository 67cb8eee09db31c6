// Command webhook-receiver is a minimal Herald webhook receiver: it checks
// each delivery's Standard Webhooks signature and timestamp, drops
// deliveries it has already handled (webhook-id is the same on every
// retry), and prints the event. See the README's webhook walk-through.
//
//	WEBHOOK_SECRET=whsec_... go run ./examples/webhook-receiver
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		log.Fatal("set WEBHOOK_SECRET to the whsec_... secret Herald returned")
	}
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":9000"
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	http.HandleFunc("POST /hooks/herald", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		if err := verify(secret, r.Header, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("webhook-id")
		mu.Lock()
		dup := seen[id]
		seen[id] = true
		mu.Unlock()
		if !dup {
			fmt.Printf("%s %s (attempt %s): %s\n", r.Header.Get("X-Herald-Event-Type"), id, r.Header.Get("X-Herald-Attempt"), body)
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx is success; anything else is retried
	})
	log.Printf("listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}

// verify checks a delivery as the Standard Webhooks specification says:
// the timestamp is within five minutes, and one of the "v1,<base64>"
// signatures (two during a secret rotation) is the HMAC-SHA256, keyed with
// the base64 part of the secret, of "<webhook-id>.<webhook-timestamp>.<body>".
func verify(secret string, h http.Header, body []byte, now time.Time) error {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return errors.New("bad secret")
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return errors.New("stale or missing webhook-timestamp")
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		v, b64, ok := strings.Cut(sig, ",")
		got, err := base64.StdEncoding.DecodeString(b64)
		if ok && v == "v1" && err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no valid signature")
}
