// Package auth decides who a request is: the admin key, a verified JWT, or
// nobody (role public). The result is a Principal carried in the request's
// context, which the permission checks in package resources read.
package auth

import "context"

// Role names with a fixed meaning.
const (
	RoleAdmin  = "admin"
	RolePublic = "public"
)

// Principal is the caller of one request.
type Principal struct {
	// UserID is the token's sub, or "" for admin-key and public callers.
	UserID string
	// Role decides the permissions that apply.
	Role string
	// Claims are the verified token's claims (nil for admin and public).
	Claims map[string]any
}

// IsAdmin tells whether the caller bypasses permissions.
func (p *Principal) IsAdmin() bool { return p != nil && p.Role == RoleAdmin }

// Admin is the principal of the admin key.
var adminPrincipal = Principal{Role: RoleAdmin}

// Admin returns the admin principal (used by internal callers too).
func Admin() *Principal { p := adminPrincipal; return &p }

type principalKey struct{}

// WithPrincipal returns a context that carries p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the request's principal, or a public one.
func FromContext(ctx context.Context) *Principal {
	if p, ok := ctx.Value(principalKey{}).(*Principal); ok && p != nil {
		return p
	}
	return &Principal{Role: RolePublic}
}
