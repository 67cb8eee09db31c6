package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/require"
)

const testSecret = "0123456789abcdef0123456789abcdef-test-secret"

// testClock is an injectable clock that only moves when told to.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// claimsAt returns valid claims relative to now; mutate replaces or deletes
// (value nil) entries.
func claimsAt(now time.Time, mutate map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":  "user-1",
		"role": "editor",
		"iat":  now.Unix(),
		"nbf":  now.Unix(),
		"exp":  now.Add(time.Hour).Unix(),
	}
	for k, v := range mutate {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func newVerifier(t *testing.T, cfg VerifierConfig) *Verifier {
	t.Helper()
	v, err := NewVerifier(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

// requireInvalid checks err wraps ErrInvalidToken with reason and does not
// leak the token.
func requireInvalid(t *testing.T, err error, reason, token string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, ErrInvalidToken)
	require.NotErrorIs(t, err, ErrKeysUnavailable)
	require.Contains(t, err.Error(), reason)
	if len(token) > 8 {
		require.NotContains(t, err.Error(), token)
	}
}

func TestVerifierHS256(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	now := clock.Now()
	v := newVerifier(t, VerifierConfig{Secret: testSecret, Now: clock.Now})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c) }

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	tests := []struct {
		name     string
		token    string
		reason   string // empty: must verify
		wantRole string
	}{
		{name: "valid", token: hs(claimsAt(now, nil)), wantRole: "editor"},
		{name: "missing role gets default", token: hs(claimsAt(now, map[string]any{"role": nil})), wantRole: "user"},
		{name: "null role gets default", token: hs(withNull(claimsAt(now, nil), "role")), wantRole: "user"},
		{name: "wrong secret", token: sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), "", claimsAt(now, nil)), reason: "bad signature"},
		{name: "tampered payload", token: tamper(hs(claimsAt(now, nil))), reason: "bad signature"},
		{name: "expired beyond leeway", token: hs(claimsAt(now, map[string]any{"exp": now.Add(-31 * time.Second).Unix()})), reason: "expired"},
		{name: "expired within leeway", token: hs(claimsAt(now, map[string]any{"exp": now.Add(-29 * time.Second).Unix()})), wantRole: "editor"},
		{name: "nbf in future beyond leeway", token: hs(claimsAt(now, map[string]any{"nbf": now.Add(time.Minute).Unix()})), reason: "not valid yet"},
		{name: "nbf in future within leeway", token: hs(claimsAt(now, map[string]any{"nbf": now.Add(29 * time.Second).Unix()})), wantRole: "editor"},
		{name: "iat in future beyond leeway", token: hs(claimsAt(now, map[string]any{"iat": now.Add(time.Minute).Unix()})), reason: "issued in the future"},
		{name: "missing exp", token: hs(claimsAt(now, map[string]any{"exp": nil})), reason: "missing a required claim"},
		{name: "exp not a number", token: hs(claimsAt(now, map[string]any{"exp": "tomorrow"})), reason: "malformed time claim"},
		{name: "missing sub", token: hs(claimsAt(now, map[string]any{"sub": nil})), reason: "missing sub"},
		{name: "sub not a string", token: hs(claimsAt(now, map[string]any{"sub": 42})), reason: "missing sub"},
		{name: "role not a string", token: hs(claimsAt(now, map[string]any{"role": []string{"editor"}})), reason: "not a string"},
		{name: "empty role", token: hs(claimsAt(now, map[string]any{"role": ""})), reason: "role claim is empty"},
		{name: "admin role rejected", token: hs(claimsAt(now, map[string]any{"role": "admin"})), reason: "reserved for the admin key"},
		{name: "Admin role rejected", token: hs(claimsAt(now, map[string]any{"role": " Admin"})), reason: "reserved for the admin key"},
		{name: "alg none", token: noneToken(t, claimsAt(now, nil)), reason: "algorithm not accepted"},
		{name: "alg none with empty signature removed", token: strings.TrimSuffix(noneToken(t, claimsAt(now, nil)), "."), reason: "malformed"},
		{name: "HS384 not accepted", token: sign(t, jwt.SigningMethodHS384, []byte(testSecret), "", claimsAt(now, nil)), reason: "algorithm not accepted"},
		{name: "RS256 without JWKS", token: sign(t, jwt.SigningMethodRS256, rsaKey, "k1", claimsAt(now, nil)), reason: "algorithm not accepted"},
		{name: "unknown alg", token: rawToken(`{"alg":"XX256","typ":"JWT"}`, `{"sub":"a"}`, "c2ln"), reason: "algorithm not accepted"},
		{name: "crit header", token: signWithHeader(t, testSecret, map[string]any{"crit": []string{"exp"}}, claimsAt(now, nil)), reason: "crit"},
		{name: "empty", token: "", reason: "empty token"},
		{name: "one segment", token: "abc", reason: "malformed"},
		{name: "two segments", token: "abc.def", reason: "malformed"},
		{name: "four segments", token: "a.b.c.d", reason: "malformed"},
		{name: "not base64", token: "!!!.@@@.###", reason: "malformed"},
		{name: "header not json", token: rawToken("nope", `{"sub":"a"}`, "c2ln"), reason: "malformed"},
		{name: "claims not json", token: rawToken(`{"alg":"HS256"}`, "nope", "c2ln"), reason: "malformed"},
		{name: "bearer prefix left on", token: "Bearer " + hs(claimsAt(now, nil)), reason: "malformed"},
		{name: "too large", token: strings.Repeat("a", maxTokenBytes+1), reason: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := v.Verify(context.Background(), tt.token)
			if tt.reason != "" {
				requireInvalid(t, err, tt.reason, tt.token)
				require.Nil(t, p)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "user-1", p.UserID)
			require.Equal(t, tt.wantRole, p.Role)
			require.False(t, p.IsAdmin())
			require.Equal(t, "user-1", p.Claims["sub"])
			require.IsType(t, float64(0), p.Claims["exp"])
		})
	}
}

func TestVerifierLeewayIsConfigurable(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	v := newVerifier(t, VerifierConfig{Secret: testSecret, Now: clock.Now, Leeway: 5 * time.Second})
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claimsAt(clock.Now(), nil))

	_, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)

	// exp is now+1h: still fine 4s after it with 5s leeway, not 6s after.
	clock.Advance(time.Hour + 4*time.Second)
	_, err = v.Verify(context.Background(), tok)
	require.NoError(t, err)
	clock.Advance(2 * time.Second)
	_, err = v.Verify(context.Background(), tok)
	requireInvalid(t, err, "expired", tok)
}

func TestVerifierAudienceAndIssuer(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	v := newVerifier(t, VerifierConfig{Secret: testSecret, Now: clock.Now, Audience: "herald", Issuer: "https://idp.example"})
	tests := []struct {
		name   string
		claims map[string]any
		reason string // "" when accepted
	}{
		{"both match", map[string]any{"aud": "herald", "iss": "https://idp.example"}, ""},
		{"audience among several", map[string]any{"aud": []any{"crm", "herald"}, "iss": "https://idp.example"}, ""},
		{"other audience", map[string]any{"aud": "crm", "iss": "https://idp.example"}, "wrong audience"},
		{"no audience", map[string]any{"iss": "https://idp.example"}, "missing a required claim"},
		{"other issuer", map[string]any{"aud": "herald", "iss": "https://evil.example"}, "wrong issuer"},
		{"no issuer", map[string]any{"aud": "herald"}, "missing a required claim"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claimsAt(clock.Now(), tt.claims))
			_, err := v.Verify(context.Background(), tok)
			if tt.reason == "" {
				require.NoError(t, err)
				return
			}
			requireInvalid(t, err, tt.reason, tok)
		})
	}
	// Without the settings, aud and iss are not checked.
	plain := newVerifier(t, VerifierConfig{Secret: testSecret, Now: clock.Now})
	_, err := plain.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claimsAt(clock.Now(), map[string]any{"aud": "crm"})))
	require.NoError(t, err)
}

func TestVerifierRoleClaim(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	now := clock.Now()
	tests := []struct {
		name        string
		roleClaim   string
		defaultRole string
		claims      map[string]any
		wantRole    string
		reason      string
	}{
		{name: "dotted path", roleClaim: "app_metadata.role", claims: map[string]any{"app_metadata": map[string]any{"role": "author"}}, wantRole: "author"},
		{name: "deep dotted path", roleClaim: "a.b.c", claims: map[string]any{"a": map[string]any{"b": map[string]any{"c": "deep"}}}, wantRole: "deep"},
		{name: "dotted path missing gets default", roleClaim: "app_metadata.role", claims: map[string]any{"app_metadata": map[string]any{"plan": "pro"}}, wantRole: "user"},
		{name: "dotted path through non-object gets default", roleClaim: "app_metadata.role", claims: map[string]any{"app_metadata": "x"}, wantRole: "user"},
		{name: "top-level role ignored when path is nested", roleClaim: "app_metadata.role", claims: map[string]any{}, wantRole: "user"},
		{name: "custom default role", roleClaim: "app_metadata.role", defaultRole: "reader", claims: map[string]any{}, wantRole: "reader"},
		{name: "namespaced claim with dots", roleClaim: "https://herald.dev/role", claims: map[string]any{"https://herald.dev/role": "ns"}, wantRole: "ns"},
		{name: "nested admin rejected", roleClaim: "app_metadata.role", claims: map[string]any{"app_metadata": map[string]any{"role": "admin"}}, reason: "reserved for the admin key"},
		{name: "nested non-string rejected", roleClaim: "app_metadata.role", claims: map[string]any{"app_metadata": map[string]any{"role": 7}}, reason: "not a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, VerifierConfig{Secret: testSecret, Now: clock.Now, RoleClaim: tt.roleClaim, DefaultRole: tt.defaultRole})
			c := claimsAt(now, map[string]any{"role": "top-level"})
			for k, val := range tt.claims {
				c[k] = val
			}
			tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c)
			p, err := v.Verify(context.Background(), tok)
			if tt.reason != "" {
				requireInvalid(t, err, tt.reason, tok)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantRole, p.Role)
		})
	}
}

func TestNewVerifierConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     VerifierConfig
		wantErr string // empty: valid
		enabled bool
	}{
		{name: "zero is disabled", cfg: VerifierConfig{}},
		{name: "secret", cfg: VerifierConfig{Secret: testSecret}, enabled: true},
		{name: "short secret", cfg: VerifierConfig{Secret: "short"}, wantErr: "HERALD_JWT_SECRET"},
		{name: "relative jwks url", cfg: VerifierConfig{JWKSURL: "/keys"}, wantErr: "HERALD_JWKS_URL"},
		{name: "ftp jwks url", cfg: VerifierConfig{JWKSURL: "ftp://idp/keys"}, wantErr: "HERALD_JWKS_URL"},
		{name: "empty role claim segment", cfg: VerifierConfig{Secret: testSecret, RoleClaim: "a..b"}, wantErr: "HERALD_JWT_ROLE_CLAIM"},
		{name: "admin default role", cfg: VerifierConfig{Secret: testSecret, DefaultRole: "admin"}, wantErr: "DefaultRole"},
		{name: "negative leeway", cfg: VerifierConfig{Secret: testSecret, Leeway: -time.Second}, wantErr: "Leeway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(context.Background(), tt.cfg)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, tt.cfg.Validate(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			t.Cleanup(v.Close)
			require.Equal(t, tt.enabled, v.Enabled())
		})
	}
}

func TestVerifierDisabledRejectsEverything(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	v := newVerifier(t, VerifierConfig{Now: clock.Now})
	require.False(t, v.Enabled())
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claimsAt(clock.Now(), nil))
	_, err := v.Verify(context.Background(), tok)
	requireInvalid(t, err, "not configured", tok)
	v.Close()
	v.Close()
}

// jwksServer serves a mutable key set and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []jwk.Key
	failing bool
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...jwk.Key) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		set := jwk.NewSet()
		for _, k := range s.keys {
			if err := set.AddKey(k); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) add(k jwk.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
}

func (s *jwksServer) setFailing(b bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = b
}

// waitFirstFetch waits until the cache's background fetch has reached the
// server, so fetch counts taken afterwards are stable.
func (s *jwksServer) waitFirstFetch(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return s.fetches.Load() >= 1 }, 5*time.Second, time.Millisecond)
}

// publicJWK builds the published form of a key, with kid and alg set
// (alg empty: leave it out, as some identity providers do).
func publicJWK(t *testing.T, pub any, kid, alg string) jwk.Key {
	t.Helper()
	k, err := jwk.Import(pub)
	require.NoError(t, err)
	require.NoError(t, k.Set(jwk.KeyIDKey, kid))
	if alg != "" {
		require.NoError(t, k.Set(jwk.AlgorithmKey, alg))
	}
	require.NoError(t, k.Set(jwk.KeyUsageKey, "sig"))
	return k
}

func TestVerifierJWKS(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ec384Key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	srv := newJWKSServer(t,
		publicJWK(t, &rsaKey.PublicKey, "rsa-1", "RS256"),
		publicJWK(t, &rsaKey.PublicKey, "rsa-noalg", ""),
		publicJWK(t, &ecKey.PublicKey, "ec-1", "ES256"),
		publicJWK(t, &ec384Key.PublicKey, "ec-384", "ES384"),
	)
	clock := newTestClock()
	now := clock.Now()
	jwksOnly := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, Now: clock.Now})
	both := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, Secret: testSecret, Now: clock.Now})

	// The bytes an attacker would use as an HMAC secret in an algorithm
	// confusion attack: the published public key, as PEM and as DER.
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	require.NoError(t, err)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	publishedJSON, err := json.Marshal(publicJWK(t, &rsaKey.PublicKey, "rsa-1", "RS256"))
	require.NoError(t, err)

	claims := claimsAt(now, nil)
	tests := []struct {
		name     string
		v        *Verifier
		token    string
		reason   string
		wantRole string
	}{
		{name: "RS256", v: jwksOnly, token: sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claims)},
		{name: "RS256 key without alg", v: jwksOnly, token: sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-noalg", claims)},
		{name: "PS256 key without alg", v: jwksOnly, token: sign(t, jwt.SigningMethodPS256, rsaKey, "rsa-noalg", claims)},
		{name: "ES256", v: jwksOnly, token: sign(t, jwt.SigningMethodES256, ecKey, "ec-1", claims)},
		{name: "ES384", v: jwksOnly, token: sign(t, jwt.SigningMethodES384, ec384Key, "ec-384", claims)},
		{name: "RS256 with both configured", v: both, token: sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claims)},
		{name: "HS256 with both configured", v: both, token: sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claims)},
		{name: "RS256 expired", v: jwksOnly, token: sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claimsAt(now, map[string]any{"exp": now.Add(-time.Hour).Unix()})), reason: "expired"},
		{name: "RS256 admin role", v: jwksOnly, token: sign(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", claimsAt(now, map[string]any{"role": "admin"})), reason: "reserved for the admin key"},
		{name: "RS256 signed by another key", v: jwksOnly, token: sign(t, jwt.SigningMethodRS256, otherRSA, "rsa-1", claims), reason: "bad signature"},
		{name: "RS256 missing kid", v: jwksOnly, token: sign(t, jwt.SigningMethodRS256, rsaKey, "", claims), reason: "missing kid"},
		{name: "RS384 against an RS256 key", v: jwksOnly, token: sign(t, jwt.SigningMethodRS384, rsaKey, "rsa-1", claims), reason: "key does not match algorithm"},
		{name: "ES256 token naming an RSA kid", v: jwksOnly, token: sign(t, jwt.SigningMethodES256, ecKey, "rsa-noalg", claims), reason: "key does not match algorithm"},
		{name: "ES256 token naming a P-384 kid", v: jwksOnly, token: sign(t, jwt.SigningMethodES256, ecKey, "ec-384", claims), reason: "key does not match algorithm"},
		{name: "HS256 when only JWKS configured", v: jwksOnly, token: sign(t, jwt.SigningMethodHS256, []byte(testSecret), "rsa-1", claims), reason: "algorithm not accepted"},
		{name: "confusion: HS256 keyed with public PEM, JWKS only", v: jwksOnly, token: sign(t, jwt.SigningMethodHS256, pemBytes, "rsa-1", claims), reason: "algorithm not accepted"},
		{name: "confusion: HS256 keyed with public DER, JWKS only", v: jwksOnly, token: sign(t, jwt.SigningMethodHS256, der, "rsa-1", claims), reason: "algorithm not accepted"},
		{name: "confusion: HS256 keyed with public JWK JSON, JWKS only", v: jwksOnly, token: sign(t, jwt.SigningMethodHS256, publishedJSON, "rsa-1", claims), reason: "algorithm not accepted"},
		{name: "confusion: HS256 keyed with public PEM, both configured", v: both, token: sign(t, jwt.SigningMethodHS256, pemBytes, "rsa-1", claims), reason: "bad signature"},
		{name: "alg none with a kid", v: both, token: noneTokenKid(t, claims, "rsa-1"), reason: "algorithm not accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := tt.v.Verify(context.Background(), tt.token)
			if tt.reason != "" {
				requireInvalid(t, err, tt.reason, tt.token)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "user-1", p.UserID)
			require.Equal(t, "editor", p.Role)
		})
	}
}

// TestVerifierKeyRotation: a token signed by a key the verifier has not seen
// yet triggers one JWKS refresh; refreshes are rate-limited by the injected
// clock, so a flood of unknown kids costs at most one fetch per interval.
func TestVerifierKeyRotation(t *testing.T) {
	t.Parallel()
	keyA, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	keyB, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	srv := newJWKSServer(t, publicJWK(t, &keyA.PublicKey, "key-a", "RS256"))
	clock := newTestClock()
	v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, Now: clock.Now})
	ctx := context.Background()

	srv.waitFirstFetch(t)
	_, err = v.Verify(ctx, sign(t, jwt.SigningMethodRS256, keyA, "key-a", claimsAt(clock.Now(), nil)))
	require.NoError(t, err)
	clock.Advance(jwksRefreshInterval + time.Second)
	base := srv.fetches.Load()

	// Key B is published; a token signed by it is accepted after one refresh.
	srv.add(publicJWK(t, &keyB.PublicKey, "key-b", "ES256"))
	tokB := sign(t, jwt.SigningMethodES256, keyB, "key-b", claimsAt(clock.Now(), nil))
	p, err := v.Verify(ctx, tokB)
	require.NoError(t, err)
	require.Equal(t, "user-1", p.UserID)
	require.Equal(t, base+1, srv.fetches.Load())

	// Known keys need no fetch.
	_, err = v.Verify(ctx, tokB)
	require.NoError(t, err)
	require.Equal(t, base+1, srv.fetches.Load())

	// A flood of unknown kids within the interval fetches nothing more.
	keyC, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tokC := sign(t, jwt.SigningMethodRS256, keyC, "key-c", claimsAt(clock.Now(), nil))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := v.Verify(ctx, tokC)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		requireInvalid(t, err, "unknown kid", tokC)
	}
	require.Equal(t, base+1, srv.fetches.Load())

	// After the interval, key C is published and picked up by one fetch.
	srv.add(publicJWK(t, &keyC.PublicKey, "key-c", "RS256"))
	_, err = v.Verify(ctx, tokC)
	requireInvalid(t, err, "unknown kid", tokC)
	require.Equal(t, base+1, srv.fetches.Load())
	clock.Advance(jwksRefreshInterval)
	_, err = v.Verify(ctx, tokC)
	require.NoError(t, err)
	require.Equal(t, base+2, srv.fetches.Load())

	// Removing a key is not something a bad token can force us to notice
	// early, but old keys keep working until the next refresh: A still verifies.
	_, err = v.Verify(ctx, sign(t, jwt.SigningMethodRS256, keyA, "key-a", claimsAt(clock.Now(), nil)))
	require.NoError(t, err)
}

// TestVerifierJWKSDownAtStart: construction does not need the identity
// provider; tokens fail with ErrKeysUnavailable (not ErrInvalidToken) until
// the keys can be fetched.
func TestVerifierJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	srv := newJWKSServer(t, publicJWK(t, &key.PublicKey, "k", "RS256"))
	srv.setFailing(true)
	clock := newTestClock()
	v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, Now: clock.Now})
	require.True(t, v.Enabled())
	srv.waitFirstFetch(t)

	tok := sign(t, jwt.SigningMethodRS256, key, "k", claimsAt(clock.Now(), nil))
	_, err = v.Verify(context.Background(), tok)
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.NotErrorIs(t, err, ErrInvalidToken)
	require.NotContains(t, err.Error(), tok)

	// Rate-limited: no fetch, still unavailable.
	fetches := srv.fetches.Load()
	_, err = v.Verify(context.Background(), tok)
	require.ErrorIs(t, err, ErrKeysUnavailable)
	require.Equal(t, fetches, srv.fetches.Load())

	srv.setFailing(false)
	clock.Advance(jwksRefreshInterval)
	_, err = v.Verify(context.Background(), tok)
	require.NoError(t, err)

	// HS256 tokens would not be affected, and after Close asymmetric tokens
	// fail fast instead of hanging on a stopped cache.
	v.Close()
	v.Close()
	tokUnknown := sign(t, jwt.SigningMethodRS256, key, "other", claimsAt(clock.Now(), nil))
	clock.Advance(jwksRefreshInterval)
	_, err = v.Verify(context.Background(), tokUnknown)
	require.ErrorIs(t, err, ErrKeysUnavailable)
}

func TestVerifierJWKSContextCancelled(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	release := make(chan struct{})
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	clock := newTestClock()
	v := newVerifier(t, VerifierConfig{JWKSURL: srv.URL, Now: clock.Now})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tok := sign(t, jwt.SigningMethodRS256, key, "k", claimsAt(clock.Now(), nil))
	_, err = v.Verify(ctx, tok)
	require.Error(t, err)
	require.True(t, errors.Is(err, context.Canceled) || errors.Is(err, ErrKeysUnavailable), "got %v", err)
	require.NotErrorIs(t, err, ErrInvalidToken)
}

// tamper swaps in a payload with another sub, keeping the header and
// signature: well-formed, but the signature no longer matches.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		panic(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), `"user-1"`, `"user-2"`, 1)))
	return strings.Join(parts, ".")
}

func noneToken(t *testing.T, claims jwt.MapClaims) string {
	return noneTokenKid(t, claims, "")
}

func noneTokenKid(t *testing.T, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	return s
}

func signWithHeader(t *testing.T, secret string, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString([]byte(secret))
	require.NoError(t, err)
	return s
}

func rawToken(header, claims, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + "." + sig
}

func withNull(c jwt.MapClaims, key string) jwt.MapClaims {
	c[key] = nil
	return c
}
