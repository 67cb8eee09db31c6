package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Guard refuses webhook targets in loopback, private, link-local, CGNAT,
// multicast, unspecified and cloud-metadata ranges (server-side request
// forgery), at registration and again when a delivery connects: the
// dialer checks the address DNS actually gave, so a name that resolves to
// a refused address fails too. AllowPrivate (HERALD_WEBHOOK_ALLOW_PRIVATE)
// switches the checks off. Safe for concurrent use.
type Guard struct {
	AllowPrivate bool
	// Resolver looks names up at registration. Default net.DefaultResolver.
	Resolver *net.Resolver
}

// refusedPrefixes are the ranges netip's predicates do not name.
var refusedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),         // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),     // CGNAT (and Alibaba's metadata address)
	netip.MustParsePrefix("192.0.0.0/24"),      // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),     // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),       // reserved, broadcast
	netip.MustParsePrefix("fd00:ec2::254/128"), // AWS metadata over IPv6 (also in fc00::/7)
	netip.MustParsePrefix("64:ff9b::/96"),      // NAT64 of any IPv4 address
	netip.MustParsePrefix("2002::/16"),         // 6to4 of any IPv4 address
}

// errRefused is a target in a refused range.
var errRefused = errors.New("the address is loopback, private, link-local or otherwise internal; set HERALD_WEBHOOK_ALLOW_PRIVATE=true to allow it")

// CheckAddr refuses an internal address.
func (g *Guard) CheckAddr(a netip.Addr) error {
	if g.AllowPrivate {
		return nil
	}
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return fmt.Errorf("%s: %w", a, errRefused)
	}
	for _, p := range refusedPrefixes {
		if p.Contains(a) {
			return fmt.Errorf("%s: %w", a, errRefused)
		}
	}
	return nil
}

// CheckURL checks a target URL's shape and, unless private targets are
// allowed, the addresses its host resolves to now. A name that does not
// resolve is accepted (it is checked again at every connect).
func (g *Guard) CheckURL(raw string) error {
	u, err := checkURLShape(raw)
	if err != nil {
		return err
	}
	if g.AllowPrivate {
		return nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return g.CheckAddr(a)
	}
	r := g.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := g.CheckAddr(a); err != nil {
			return fmt.Errorf("%s resolves to %w", host, err)
		}
	}
	return nil
}

// control is the dialer's check, run after DNS on the address it is about
// to connect to.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhooks: dial %s: %w", address, err)
	}
	return g.CheckAddr(ap.Addr())
}

// Dialer returns a dialer that refuses internal addresses at connect time.
func (g *Guard) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
}
