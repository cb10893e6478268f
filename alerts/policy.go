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
// loopback, private, link-local, multicast or unspecified address unless the allow-list
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

func restricted(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(ip) // carrier-grade NAT
}

func (p *URLPolicy) allowedIP(ip netip.Addr) bool {
	if !restricted(ip) {
		return true
	}
	for _, pf := range p.prefixes {
		if pf.Contains(ip.Unmap()) {
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
			return invalidURL("%s resolves to %s, a loopback, private or link-local address; name it in FLASHHOLD_WEBHOOK_ALLOW to allow it", host, ip)
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
