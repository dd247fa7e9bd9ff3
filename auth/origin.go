package auth

import (
	"fmt"
	"net/url"
	"strings"
)

// Origins is the allow-list of browser origins for WebSocket handshakes,
// the defence against cross-site WebSocket hijacking. Entries are hosts
// with an optional port, compared with the host[:port] of the Origin header
// case-insensitively; the scheme is not compared.
//
// Whatever the list, a handshake without an Origin header is allowed
// (browsers always send one, so its absence means a non-browser client that
// no page can steer) and so is one whose Origin host is the request's own
// Host (a page the gateway itself served). The zero Origins allows only
// those two cases.
type Origins struct {
	hosts []string // lower case
	any   bool
}

// ParseOrigins parses a comma-separated list of hosts such as
// "example.com,app.example.com:8443", or "*" to allow every origin. Spaces
// around entries are ignored; an empty csv gives the zero Origins. The
// error wraps ErrBadOrigin.
func ParseOrigins(csv string) (Origins, error) {
	var o Origins
	if strings.TrimSpace(csv) == "" {
		return o, nil
	}
	for _, e := range strings.Split(csv, ",") {
		e = strings.TrimSpace(e)
		if e == "*" {
			o.any = true
			continue
		}
		if err := checkOriginHost(e); err != nil {
			return Origins{}, err
		}
		o.hosts = append(o.hosts, strings.ToLower(e))
	}
	return o, nil
}

// checkOriginHost accepts host or host:port (IPv6 literals bracketed) and
// nothing else: no scheme, path, user info or wildcard.
func checkOriginHost(e string) error {
	bad := func(reason string) error {
		return fmt.Errorf("%w %q: %s", ErrBadOrigin, e, reason)
	}
	if e == "" {
		return bad("empty entry")
	}
	if strings.Contains(e, "://") {
		return bad("give the host without a scheme")
	}
	if strings.ContainsAny(e, "/?#@* \t") {
		return bad("want host or host:port")
	}
	u, err := url.Parse("//" + e)
	if err != nil || u.Host != e || u.Hostname() == "" {
		return bad("want host or host:port")
	}
	if strings.HasSuffix(e, ":") {
		return bad("empty port")
	}
	return nil
}

// Allowed reports whether a handshake with Origin header value origin
// ("" when absent) and Host header host may proceed. It allocates nothing.
func (o Origins) Allowed(origin, host string) bool {
	if o.any || origin == "" {
		return true
	}
	h, ok := originHost(origin)
	if !ok {
		return false // "null" and other opaque origins
	}
	if host != "" && strings.EqualFold(h, host) {
		return true
	}
	for _, a := range o.hosts {
		if strings.EqualFold(h, a) {
			return true
		}
	}
	return false
}

// originHost returns the host[:port] of a serialised origin
// scheme://host[:port] (RFC 6454 section 6.2).
func originHost(origin string) (string, bool) {
	i := strings.Index(origin, "://")
	if i <= 0 {
		return "", false
	}
	h := origin[i+3:]
	if h == "" || strings.ContainsAny(h, "/?#@ ") {
		return "", false
	}
	return h, true
}
