package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// ErrInvalidToken is wrapped by every error Verify returns for a token that
// is not acceptable: malformed, badly signed, expired, not yet valid, signed
// with an algorithm or key it may not use, or carrying unusable claims. The
// API answers it with 401. The wrapping error adds a short reason and never
// the token itself.
var ErrInvalidToken = errors.New("auth: invalid token")

// ErrKeysUnavailable is wrapped by the error Verify returns when an RS/ES/PS
// token cannot be checked because the JWKS could not be fetched (the
// identity provider is down, or the Verifier is closed). It does not wrap
// ErrInvalidToken: the token may well be valid, so the API should answer 503
// rather than tell the client to sign in again.
var ErrKeysUnavailable = errors.New("auth: signing keys unavailable")

const (
	defaultRoleClaim   = "role"
	defaultDefaultRole = "user"
	defaultLeeway      = 30 * time.Second
	defaultHTTPTimeout = 10 * time.Second

	// minHS256SecretBytes is RFC 7518 section 3.2: an HS256 key must be at
	// least as long as the hash output.
	minHS256SecretBytes = 32

	// jwksRefreshInterval bounds the refreshes triggered by tokens with an
	// unknown kid, so that garbage kids cannot turn Herald into a load
	// generator against the identity provider.
	jwksRefreshInterval = 10 * time.Second
	// Background refreshes follow the JWKS response's Cache-Control within
	// these bounds; the maximum keeps revoked keys from living for weeks.
	jwksMinBackgroundInterval = 5 * time.Minute
	jwksMaxBackgroundInterval = time.Hour

	// maxTokenBytes rejects absurd tokens before any decoding work.
	maxTokenBytes = 16 << 10
)

// hmacAlgs may only be verified with VerifierConfig.Secret, and asymmetricAlgs
// only with a key from the JWKS. Keeping the two sets apart is what prevents
// algorithm confusion.
var (
	hmacAlgs       = []string{"HS256"}
	asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)

// VerifierConfig configures a Verifier. The zero value is valid and yields a
// disabled Verifier (Enabled reports false).
type VerifierConfig struct {
	// Secret is the HS256 secret (HERALD_JWT_SECRET). Empty disables HS256.
	// It must be at least 32 bytes long.
	Secret string
	// JWKSURL is where RS/PS/ES public keys are published (HERALD_JWKS_URL),
	// as an http or https URL. Empty disables asymmetric tokens.
	JWKSURL string
	// RoleClaim is the claim holding the role (HERALD_JWT_ROLE_CLAIM), as a
	// dotted path into nested objects such as "app_metadata.role". A
	// top-level claim whose name is the whole path (a namespaced claim like
	// "https://example.com/role") wins over the nested walk. Default "role".
	RoleClaim string
	// DefaultRole is the role of a token that has no role claim. Default
	// "user". It may not be "admin".
	DefaultRole string
	// HTTPClient fetches the JWKS. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock used for exp, nbf, iat and refresh rate limiting.
	// Default time.Now.
	Now func() time.Time
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 30s
	// (zero means the default); negative is an error.
	Leeway time.Duration
	// Audience, when set, must be in the token's aud (HERALD_JWT_AUDIENCE),
	// so tokens an identity provider issued for other applications are
	// refused. Default: not checked.
	Audience string
	// Issuer, when set, must equal the token's iss (HERALD_JWT_ISSUER).
	// Default: not checked.
	Issuer string
}

// Validate reports the first bad setting, naming it.
func (c VerifierConfig) Validate() error {
	if c.Secret != "" && len(c.Secret) < minHS256SecretBytes {
		return fmt.Errorf("auth: Secret (HERALD_JWT_SECRET): must be at least %d bytes for HS256", minHS256SecretBytes)
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("auth: JWKSURL (HERALD_JWKS_URL): must be an absolute http or https URL")
		}
	}
	if c.RoleClaim != "" {
		for _, seg := range strings.Split(c.RoleClaim, ".") {
			if seg == "" {
				return fmt.Errorf("auth: RoleClaim (HERALD_JWT_ROLE_CLAIM): %q has an empty path segment", c.RoleClaim)
			}
		}
	}
	if isAdminRole(c.DefaultRole) {
		return errors.New("auth: DefaultRole: must not be admin (admin is the admin key's role only)")
	}
	if c.Leeway < 0 {
		return errors.New("auth: Leeway: must not be negative")
	}
	return nil
}

func (c VerifierConfig) withDefaults() VerifierConfig {
	if c.RoleClaim == "" {
		c.RoleClaim = defaultRoleClaim
	}
	if c.DefaultRole == "" {
		c.DefaultRole = defaultDefaultRole
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Leeway == 0 {
		c.Leeway = defaultLeeway
	}
	return c
}

// Verifier checks bearer JWTs and turns them into Principals. It is safe for
// concurrent use.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser
	// allowed is the union of the algorithms the configured methods accept.
	allowed map[string]bool

	// JWKS state; nil/zero when JWKSURL is empty.
	cache     *jwk.Cache
	resource  interface{ Resource() jwk.Set }
	ctx       context.Context // lives until Close; bounds every cache call
	cancel    context.CancelFunc
	closeOnce sync.Once

	// refreshSem admits one forced refresh at a time; lastRefresh is only
	// read and written while holding it.
	refreshSem  chan struct{}
	lastRefresh time.Time
}

// NewVerifier validates cfg and builds a Verifier.
//
// When JWKSURL is set, it registers the URL with a background-refreshing
// JWKS cache but does not wait for the first fetch: Herald starts even if the
// identity provider is briefly down. Until keys arrive, asymmetric tokens
// fail with ErrKeysUnavailable, and each such request may trigger a fetch
// (at most one per 10s). ctx bounds construction only; the background
// refresh runs until Close.
func NewVerifier(ctx context.Context, cfg VerifierConfig) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	v := &Verifier{cfg: cfg, allowed: map[string]bool{}, refreshSem: make(chan struct{}, 1)}
	var methods []string
	if cfg.Secret != "" {
		methods = append(methods, hmacAlgs...)
	}
	if cfg.JWKSURL != "" {
		methods = append(methods, asymmetricAlgs...)
	}
	for _, m := range methods {
		v.allowed[m] = true
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithStrictDecoding(),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)

	if cfg.JWKSURL == "" {
		return v, nil
	}
	// The cache outlives ctx (which may be a startup timeout) but keeps its
	// values; Close is what stops it.
	v.ctx, v.cancel = context.WithCancel(context.WithoutCancel(ctx))
	cache, err := jwk.NewCache(v.ctx, httprc.NewClient(
		httprc.WithHTTPClient(cfg.HTTPClient),
		httprc.WithWorkers(2), // one for the background refresh, one for forced ones
	))
	if err != nil {
		v.cancel()
		return nil, fmt.Errorf("auth: jwks cache: %w", err)
	}
	v.cache = cache
	if err := cache.Register(ctx, cfg.JWKSURL,
		jwk.WithHTTPClient(cfg.HTTPClient),
		jwk.WithWaitReady(false),
		jwk.WithMinInterval(jwksMinBackgroundInterval),
		jwk.WithMaxInterval(jwksMaxBackgroundInterval),
	); err != nil {
		v.Close()
		return nil, fmt.Errorf("auth: jwks register: %w", err)
	}
	res, err := cache.LookupResource(ctx, cfg.JWKSURL)
	if err != nil {
		v.Close()
		return nil, fmt.Errorf("auth: jwks lookup: %w", err)
	}
	// Holding the resource lets Verify read the current set with an atomic
	// load instead of a round trip through the cache's controller goroutine.
	v.resource = res
	return v, nil
}

// Enabled reports whether any verification method is configured. A disabled
// Verifier rejects every token.
func (v *Verifier) Enabled() bool { return len(v.allowed) > 0 }

// Close stops the background JWKS refresh and waits for it. It is safe to
// call more than once. Afterwards Verify still accepts HS256 tokens and
// tokens signed by JWKS keys already fetched; nothing is fetched any more, so
// a token that would need a refresh fails with ErrKeysUnavailable.
func (v *Verifier) Close() {
	if v.cancel == nil {
		return
	}
	v.closeOnce.Do(func() {
		v.cancel()
		if v.cache != nil {
			// The cache's goroutines stop on cancel; this waits for them.
			_ = v.cache.Shutdown(context.Background())
		}
	})
}

// Verify checks token (without the "Bearer " prefix) and returns its
// Principal: UserID is sub, Role the value at RoleClaim (DefaultRole when
// absent), Claims every claim with numbers as float64.
//
// Errors wrap ErrInvalidToken, except JWKS outages (ErrKeysUnavailable) and
// ctx ending during a JWKS fetch. A token claiming the role "admin" is
// rejected: admin means the admin key, and a token that an identity provider
// (or a user able to edit their own metadata there) can mint must never
// bypass permissions.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if !v.Enabled() {
		return nil, invalid("jwt authentication is not configured")
	}
	if token == "" {
		return nil, invalid("empty token")
	}
	if len(token) > maxTokenBytes {
		return nil, invalid("token too large")
	}

	claims := jwt.MapClaims{}
	var keyErr error
	parsed, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		k, err := v.key(ctx, t)
		keyErr = err
		return k, err
	})
	if err != nil {
		return nil, v.classify(parsed, err, keyErr)
	}

	sub, ok := claims["sub"].(string)
	if !ok || sub == "" {
		return nil, invalid("missing sub")
	}
	role, err := v.role(claims)
	if err != nil {
		return nil, err
	}
	return &Principal{UserID: sub, Role: role, Claims: map[string]any(claims)}, nil
}

// key is the jwt.Keyfunc: it picks the key by the token's alg family, so an
// HMAC token only ever meets the secret and an asymmetric token only ever
// meets a JWKS public key.
func (v *Verifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 4.1.11: unknown critical extensions must be rejected,
		// and we understand none.
		return nil, errReason("unsupported crit header")
	}
	alg := t.Method.Alg()
	if !v.allowed[alg] {
		return nil, errReason("algorithm not accepted")
	}
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if alg != "HS256" || v.cfg.Secret == "" {
			return nil, errReason("algorithm not accepted")
		}
		return []byte(v.cfg.Secret), nil
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS, *jwt.SigningMethodECDSA:
		if v.resource == nil {
			return nil, errReason("algorithm not accepted")
		}
		kid, ok := t.Header["kid"].(string)
		if !ok || kid == "" {
			return nil, errReason("missing kid")
		}
		return v.jwksKey(ctx, alg, kid)
	default:
		return nil, errReason("algorithm not accepted")
	}
}

// jwksKey finds the public key for kid and alg, refreshing the JWKS once
// (rate-limited) when the kid is unknown: that is how key rotation reaches
// us before the next background refresh.
func (v *Verifier) jwksKey(ctx context.Context, alg, kid string) (any, error) {
	if set := v.resource.Resource(); set != nil {
		if k, found, err := findKey(set, kid, alg); found {
			return k, err
		}
	}
	set, err := v.refresh(ctx)
	if err != nil {
		return nil, err
	}
	if set == nil {
		return nil, fmt.Errorf("%w: jwks not fetched yet", ErrKeysUnavailable)
	}
	k, found, err := findKey(set, kid, alg)
	if !found {
		return nil, errReason("unknown kid")
	}
	return k, err
}

// refresh fetches the JWKS now unless a forced fetch happened in the last
// jwksRefreshInterval, and returns the current set (nil if none yet).
// Callers queue behind a fetch in flight and then see its result.
func (v *Verifier) refresh(ctx context.Context) (jwk.Set, error) {
	// Bound the wait and the fetch by both the request and the Verifier's
	// lifetime, so Close never leaves a request hanging on the cache.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(v.ctx, cancel)
	defer stop()

	select {
	case v.refreshSem <- struct{}{}:
	case <-ctx.Done():
		return nil, v.ctxErr(ctx)
	}
	defer func() { <-v.refreshSem }()

	now := v.cfg.Now()
	if !v.lastRefresh.IsZero() && now.Sub(v.lastRefresh) < jwksRefreshInterval && now.Sub(v.lastRefresh) >= 0 {
		return v.resource.Resource(), nil
	}
	// Counted before the fetch so that a failing identity provider is also
	// asked at most once per interval.
	v.lastRefresh = now
	if _, err := v.cache.Refresh(ctx, v.cfg.JWKSURL); err != nil {
		if ctx.Err() != nil {
			return nil, v.ctxErr(ctx)
		}
		return nil, fmt.Errorf("%w: refresh: %w", ErrKeysUnavailable, err)
	}
	return v.resource.Resource(), nil
}

func (v *Verifier) ctxErr(ctx context.Context) error {
	if v.ctx.Err() != nil {
		return fmt.Errorf("%w: verifier closed", ErrKeysUnavailable)
	}
	return context.Cause(ctx)
}

// findKey returns the public key with kid that suits alg. found is false
// only when no key carries kid (so a refresh may help); a key that carries
// kid but does not suit alg is an error, never a fallback to another key.
func findKey(set jwk.Set, kid, alg string) (key any, found bool, err error) {
	var lastErr error
	for i := range set.Len() {
		k, ok := set.Key(i)
		if !ok {
			continue
		}
		if id, _ := k.KeyID(); id != kid {
			continue
		}
		found = true
		pub, err := keyFor(k, alg)
		if err == nil {
			return pub, true, nil
		}
		// Several keys may share a kid (one RSA, one EC); try them all.
		lastErr = err
	}
	return nil, found, lastErr
}

func keyFor(k jwk.Key, alg string) (any, error) {
	if use, ok := k.KeyUsage(); ok && use != "sig" {
		return nil, errReason("key is not for signatures")
	}
	if ka, ok := k.Algorithm(); ok && ka.String() != "" && ka.String() != alg {
		return nil, errReason("key does not match algorithm")
	}
	raw, err := jwk.PublicRawKeyOf(k)
	if err != nil {
		return nil, errReason("unusable key")
	}
	switch pub := raw.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS") {
			return pub, nil
		}
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		if want != nil && pub.Curve == want {
			return pub, nil
		}
	}
	// Symmetric ("oct") JWKS entries land here too: a JWKS key is never an
	// HMAC secret.
	return nil, errReason("key does not match algorithm")
}

// role reads RoleClaim from claims.
func (v *Verifier) role(claims map[string]any) (string, error) {
	val, ok := lookupClaim(claims, v.cfg.RoleClaim)
	if !ok || val == nil {
		return v.cfg.DefaultRole, nil
	}
	role, ok := val.(string)
	if !ok {
		return "", invalid("role claim is not a string")
	}
	if role == "" {
		return "", invalid("role claim is empty")
	}
	if isAdminRole(role) {
		return "", invalid("role admin is reserved for the admin key")
	}
	return role, nil
}

// lookupClaim returns the value at a dotted path. A top-level claim named by
// the whole path wins, so namespaced claims with dots in their names work.
func lookupClaim(claims map[string]any, path string) (any, bool) {
	if val, ok := claims[path]; ok {
		return val, true
	}
	var cur any = claims
	for seg := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// isAdminRole is deliberately loose (case, spaces) so that a token role
// cannot impersonate admin in a comparison done elsewhere less carefully.
func isAdminRole(role string) bool {
	return strings.EqualFold(strings.TrimSpace(role), RoleAdmin)
}

// classify turns a jwt parse error into ErrInvalidToken with a short reason.
// keyErr is the key lookup's own error, if it failed: JWKS outages and
// context errors from it pass through unchanged rather than as invalid tokens.
func (v *Verifier) classify(t *jwt.Token, err, keyErr error) error {
	if keyErr != nil {
		var r reasonError
		if errors.As(keyErr, &r) {
			return invalid(string(r))
		}
		if errors.Is(keyErr, ErrKeysUnavailable) {
			return keyErr
		}
		return fmt.Errorf("auth: verify: %w", keyErr)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid("malformed")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t != nil && t.Method != nil && !v.allowed[t.Method.Alg()] {
			return invalid("algorithm not accepted")
		}
		return invalid("bad signature")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// The alg is unknown to the jwt package, or missing.
		return invalid("algorithm not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalid("wrong audience")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid("wrong issuer")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalid("missing a required claim")
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalid("expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("not valid yet")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("issued in the future")
	case errors.Is(err, jwt.ErrInvalidType):
		return invalid("malformed time claim")
	default:
		return invalid("rejected")
	}
}

// reasonError is a keyfunc failure whose text is safe to show (it never
// contains token material).
type reasonError string

func (e reasonError) Error() string { return string(e) }

func errReason(s string) error { return reasonError(s) }

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, reason) }
