package broker

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

type kind uint8

const (
	kindMemory kind = iota
	kindRedis
	kindRedisCluster
	kindNATS
)

// endpoint is a parsed broker URL.
type endpoint struct {
	kind     kind
	addrs    []string // host:port each; for NATS, whole nats:// URLs
	username string
	password string
	db       int
}

func badURL(raw, why string) error {
	return fmt.Errorf("%w %q: %s", ErrBadURL, redact(raw), why)
}

// redact hides a password so that errors can be logged.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
			return scheme + "://" + user + ":xxx@" + rest[at+1:]
		}
	}
	return raw
}

// parseURL understands the forms documented on Open.
func parseURL(raw string) (endpoint, error) {
	if raw == "" || raw == "memory" {
		return endpoint{kind: kindMemory}, nil
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return endpoint{}, badURL(raw, "no scheme")
	}
	switch scheme {
	case "redis":
		return parseRedis(raw, rest, kindRedis)
	case "redis-cluster":
		return parseRedis(raw, rest, kindRedisCluster)
	case "nats":
		return parseNATS(raw)
	default:
		return endpoint{}, badURL(raw, "unknown scheme "+strconv.Quote(scheme))
	}
}

// parseRedis parses [user:pass@]host:port[,host:port...][/db]. Only the
// cluster form may list several addresses; it takes no db (cluster has one).
func parseRedis(raw, rest string, k kind) (endpoint, error) {
	ep := endpoint{kind: k}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return ep, badURL(raw, "query and fragment are not supported")
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		info := rest[:at]
		rest = rest[at+1:]
		user, pass, _ := strings.Cut(info, ":")
		var err error
		if ep.username, err = url.PathUnescape(user); err != nil {
			return ep, badURL(raw, "bad user")
		}
		if ep.password, err = url.PathUnescape(pass); err != nil {
			return ep, badURL(raw, "bad password")
		}
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if path != "" {
		if k == kindRedisCluster {
			return ep, badURL(raw, "a cluster has no database number")
		}
		db, err := strconv.Atoi(path)
		if err != nil || db < 0 {
			return ep, badURL(raw, "database must be a number")
		}
		ep.db = db
	}
	for _, h := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return ep, badURL(raw, "want host:port, got "+strconv.Quote(h))
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return ep, badURL(raw, "bad port "+strconv.Quote(port))
		}
		ep.addrs = append(ep.addrs, h)
	}
	if k == kindRedis && len(ep.addrs) != 1 {
		return ep, badURL(raw, "redis:// takes one address; use redis-cluster:// for several")
	}
	return ep, nil
}

// parseNATS checks each comma-separated nats://host:port URL; nats.go
// takes the list as is.
func parseNATS(raw string) (endpoint, error) {
	ep := endpoint{kind: kindNATS}
	for _, s := range strings.Split(raw, ",") {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "nats" {
			return ep, badURL(raw, "want nats://host:port, got "+strconv.Quote(redact(s)))
		}
		if u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return ep, badURL(raw, "want nats://host:port, got "+strconv.Quote(redact(s)))
		}
		if p, err := strconv.Atoi(u.Port()); err != nil || p <= 0 || p > 65535 {
			return ep, badURL(raw, "bad port "+strconv.Quote(u.Port()))
		}
		ep.addrs = append(ep.addrs, s)
	}
	return ep, nil
}
