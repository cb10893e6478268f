package alerts

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/flashhold/flashhold/engine"
)

// URLPolicy decides which callback URLs webhooks may use: http or https only, and never a
// loopback, private, link-local, multicast, unspecified or other special-purpose address (nor
// an IPv6 address that carries such an IPv4 address) unless the allow-list
// (FLASHHOLD_WEBHOOK_ALLOW: addresses, CIDR prefixes or host names) names it. It is checked
// when a subscription is made and again when each delivery dials, so a name that later
// resolves somewhere forbidden is still refused.
type URLPolicy struct {
	prefixes []netip.Prefix
	hosts    map[string]bool
	resolver *net.Resolver
}

// NewURLPolicy builds a policy with an allow-list.
func NewURLPolicy(allow []string) (*URLPolicy, error) {
	p := &URLPolicy{hosts: map[string]bool{}, resolver: net.DefaultResolver}
	for _, a := range allow {
		a = strings.TrimSpace(a)
		switch {
		case a == "":
		case strings.Contains(a, "/"):
			pf, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, fmt.Errorf("FLASHHOLD_WEBHOOK_ALLOW: %w", err)
			}
			p.prefixes = append(p.prefixes, pf)
		default:
			if ip, err := netip.ParseAddr(a); err == nil {
				p.prefixes = append(p.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			} else {
				p.hosts[strings.ToLower(a)] = true
			}
		}
	}
	return p, nil
}

// specialPurpose are the ranges of the IANA special-purpose registries that no callback has
// business reaching, besides those the netip predicates already cover (loopback, private,
// link-local, multicast, unspecified).
var specialPurpose = prefixes(
	"0.0.0.0/8",       // "this network"
	"100.64.0.0/10",   // carrier-grade NAT
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation (TEST-NET-1)
	"192.88.99.0/24",  // 6to4 relay anycast, deprecated
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation (TEST-NET-2)
	"203.0.113.0/24",  // documentation (TEST-NET-3)
	"240.0.0.0/4",     // reserved, and the limited broadcast address
	"64:ff9b:1::/48",  // local-use NAT64: where the IPv4 address sits depends on the local prefix length
	"100::/64",        // discard-only
	"2001:2::/48",     // benchmarking
	"2001:10::/28",    // ORCHID, deprecated
	"2001:db8::/32",   // documentation
	"3fff::/20",       // documentation
	"5f00::/16",       // SRv6 segment identifiers
	"fc00::/7",        // unique-local
	"fec0::/10",       // site-local, deprecated
)

// Prefixes of IPv6 addresses that carry an IPv4 address in their last 32 bits.
var (
	ipv4Mapped     = netip.MustParsePrefix("::ffff:0:0/96")
	ipv4Translated = netip.MustParsePrefix("::ffff:0:0:0/96")
	ipv4Compatible = netip.MustParsePrefix("::/96")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	teredo         = netip.MustParsePrefix("2001::/32")
)

func prefixes(list ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(list))
	for i, s := range list {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func restricted(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap() // a zoned address matches no prefix
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, pf := range specialPurpose {
		if pf.Contains(ip) {
			return true
		}
	}
	for _, v4 := range embeddedIPv4(ip) {
		if restricted(v4) {
			return true
		}
	}
	return false
}

// embeddedIPv4 returns the IPv4 addresses an IPv6 address carries: packets to it may be
// translated or tunnelled to them.
func embeddedIPv4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	last := netip.AddrFrom4([4]byte(b[12:16]))
	switch {
	case ipv4Mapped.Contains(ip), ipv4Translated.Contains(ip), ipv4Compatible.Contains(ip), nat64.Contains(ip):
		return []netip.Addr{last}
	case sixToFour.Contains(ip):
		return []netip.Addr{netip.AddrFrom4([4]byte(b[2:6]))}
	case teredo.Contains(ip):
		// The Teredo server's address in clear; the client's with every bit inverted.
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		return []netip.Addr{netip.AddrFrom4([4]byte(b[4:8])), netip.AddrFrom4(client)}
	}
	return nil
}

func (p *URLPolicy) allowedIP(ip netip.Addr) bool {
	if !restricted(ip) {
		return true
	}
	for _, pf := range p.prefixes {
		if pf.Contains(ip.WithZone("").Unmap()) {
			return true
		}
	}
	return false
}

func invalidURL(format string, args ...any) error {
	return &engine.ValidationError{Field: "callback_url", Reason: fmt.Sprintf(format, args...)}
}

// Check validates a callback URL.
func (p *URLPolicy) Check(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalidURL("must be an absolute http or https URL")
	}
	if u.User != nil {
		return invalidURL("must not carry credentials")
	}
	host := strings.ToLower(u.Hostname())
	if p.hosts[host] {
		return nil
	}
	ips, err := p.resolve(ctx, host)
	if err != nil {
		return invalidURL("host %s does not resolve", host)
	}
	for _, ip := range ips {
		if !p.allowedIP(ip) {
			return invalidURL("%s resolves to %s, a loopback, private, link-local or special-purpose address; name it in FLASHHOLD_WEBHOOK_ALLOW to allow it", host, ip)
		}
	}
	return nil
}

func (p *URLPolicy) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	return p.resolver.LookupNetIP(ctx, "ip", host)
}

// DialContext dials only addresses the policy allows (for the delivery HTTP client).
func (p *URLPolicy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := p.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	for _, ip := range ips {
		if p.hosts[strings.ToLower(host)] || p.allowedIP(ip) {
			return d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		}
	}
	return nil, fmt.Errorf("webhook to %s refused: no allowed address", host)
}
