package callback

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// sourceFilter decides whether a request's client may post callbacks.
type sourceFilter struct {
	allow   []netip.Prefix
	proxies []netip.Prefix
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the request's peer, or, when the peer is a trusted proxy,
// the right-most address of X-Forwarded-For that is not a trusted proxy.
// Addresses left of that one were written by the client and prove nothing.
func (f *sourceFilter) clientAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	peer = peer.Unmap()
	if !contains(f.proxies, peer) {
		return peer, true
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if h == "" {
			continue
		}
		a, err := netip.ParseAddr(h)
		if err != nil {
			// A garbled hop cannot be vouched for.
			return netip.Addr{}, false
		}
		a = a.Unmap()
		if !contains(f.proxies, a) {
			return a, true
		}
	}
	return peer, true
}

// allowed reports whether the request's client is on the allow-list; every
// source is allowed when the list is empty.
func (f *sourceFilter) allowed(r *http.Request) bool {
	if len(f.allow) == 0 {
		return true
	}
	a, ok := f.clientAddr(r)
	return ok && contains(f.allow, a)
}

// untrustedForward reports whether the request carries forwarding headers
// from a peer that is not a trusted proxy: it was relayed by something we
// know nothing about.
func (f *sourceFilter) untrustedForward(r *http.Request) bool {
	if r.Header.Get("X-Forwarded-For") == "" && r.Header.Get("Forwarded") == "" {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	return err != nil || !contains(f.proxies, peer.Unmap())
}
