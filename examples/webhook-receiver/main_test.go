package main

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestVerifyAgreesWithTheReferenceLibrary: what the reference library
// signs, the example accepts; a changed body, id or stale timestamp it
// refuses.
func TestVerifyAgreesWithTheReferenceLibrary(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"eventType":"orders.created"}`)
	sig, err := wh.Sign("evt-1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "evt-1")
	h.Set("webhook-timestamp", fmtUnix(now))
	h.Set("webhook-signature", "v1,bm90IGl0 "+sig) // a rotation: one old, one current
	if err := verify(secret, h, body, now); err != nil {
		t.Fatalf("valid delivery refused: %v", err)
	}
	if err := verify(secret, h, []byte(`{"eventType":"orders.deleted"}`), now); err == nil {
		t.Fatal("a changed body was accepted")
	}
	if err := verify(secret, h, body, now.Add(10*time.Minute)); err == nil {
		t.Fatal("a stale timestamp was accepted")
	}
	h.Set("webhook-id", "evt-2")
	if err := verify(secret, h, body, now); err == nil {
		t.Fatal("a changed id was accepted")
	}
}

func fmtUnix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
