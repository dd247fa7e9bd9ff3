// Package promcheck holds what the dashboard and alert tests share: the
// series a real node exports, scraped from its /metrics, and the metric
// names and label matchers a PromQL expression selects.
//
// The extractor is a tokenizer, not a PromQL parser: it knows where names
// can stand (outside strings, label matchers, ranges and the label lists
// after by, without, on, ignoring, group_left and group_right) and treats
// an identifier followed by "(" as a function. promtool parses the rules
// for real; this only has to find every selector in them.
package promcheck

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/subsock/subsock/gateway"
)

// TargetLabels are attached by Prometheus at scrape time, so every series
// has them though the node never writes them.
var TargetLabels = []string{"instance", "job"}

// Synthetic are series Prometheus makes for every target; they may be
// used beside the node's own ("up" is the only view of a node that no
// longer answers, such as one that is draining: its listener is closed).
var Synthetic = []string{"up"}

// Promtool runs promtool in dir and fails the test, with its output, when
// it fails. promtool is installed by scripts/install-deps.sh (Debian's
// prometheus package), which `make test` runs first.
func Promtool(t testing.TB, dir string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatalf("promtool not found: run scripts/install-deps.sh (or make deps)")
	}
	cmd := exec.Command("promtool", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Series maps each series name a node exports to the label names it has.
type Series map[string]map[string]bool

// Has reports whether name is exported or synthetic.
func (s Series) Has(name string) bool {
	if _, ok := s[name]; ok {
		return true
	}
	for _, n := range Synthetic {
		if n == name {
			return true
		}
	}
	return false
}

// HasLabel reports whether series name carries label (target labels and,
// for a histogram's _bucket series, le included).
func (s Series) HasLabel(name, label string) bool {
	for _, l := range TargetLabels {
		if l == label {
			return true
		}
	}
	return label == "__name__" || s[name][label]
}

// Names returns the series names, sorted.
func (s Series) Names() []string {
	out := make([]string, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Exported starts a node with the zero Config (the in-process broker),
// scrapes its /metrics once and shuts it down.
func Exported(t testing.TB) Series {
	t.Helper()
	g, err := gateway.New(gateway.Config{})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = g.Shutdown(context.Background())
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-served
	}()

	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	s, err := ParseExposition(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return s
}

// ParseExposition reads the Prometheus text format: every sample line
// names a series (a histogram writes its _bucket, _sum and _count).
func ParseExposition(r io.Reader) (Series, error) {
	s := Series{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end <= 0 {
			return nil, fmt.Errorf("malformed sample line %q", line)
		}
		name := line[:end]
		labels := s[name]
		if labels == nil {
			labels = map[string]bool{}
			s[name] = labels
		}
		if line[end] == '{' {
			sel, _, err := matchers(line, end)
			if err != nil {
				return nil, fmt.Errorf("sample line %q: %w", line, err)
			}
			for _, l := range sel {
				labels[l.name] = true
			}
		}
	}
	return s, sc.Err()
}

// Selector is one metric selection in an expression: its name and the
// labels its matchers name.
type Selector struct {
	Name   string
	Labels []string
}

// keywords are identifiers that are operators, modifiers or aggregations
// (which may stand before "by (…)" rather than "("), never names.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"inf": true, "nan": true, "atan2": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true,
	"stddev": true, "stdvar": true, "count": true, "count_values": true,
	"bottomk": true, "topk": true, "quantile": true,
}

// labelLists are modifiers followed by a parenthesised list of labels.
var labelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true,
}

// Selectors returns every metric selector in a PromQL expression. Grafana
// variables ($instance, ${DS}, $__rate_interval) are skipped wherever they
// stand.
func Selectors(expr string) ([]Selector, error) {
	var out []Selector
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#': // a comment runs to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$':
			i = skipVariable(expr, i)
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unclosed [ at %d", i)
			}
			i += j + 1
		case c == '{': // a selector with no name before it: {__name__="x"}
			ls, j, err := matchers(expr, i)
			if err != nil {
				return nil, err
			}
			sel := Selector{}
			for _, l := range ls {
				if l.name == "__name__" {
					sel.Name = l.value
				} else {
					sel.Labels = append(sel.Labels, l.name)
				}
			}
			if sel.Name == "" {
				return nil, fmt.Errorf("selector at %d has no metric name", i)
			}
			out = append(out, sel)
			i = j
		case isDigit(c) || (c == '.' && i+1 < len(expr) && isDigit(expr[i+1])):
			i = skipNumber(expr, i)
		case isNameStart(c):
			j := i
			for j < len(expr) && isNameChar(expr[j]) {
				j++
			}
			word := expr[i:j]
			next := skipSpace(expr, j)
			switch {
			case labelLists[strings.ToLower(word)]:
				if next < len(expr) && expr[next] == '(' {
					k := strings.IndexByte(expr[next:], ')')
					if k < 0 {
						return nil, fmt.Errorf("unclosed label list after %s", word)
					}
					j = next + k + 1
				}
			case keywords[strings.ToLower(word)]:
			case next < len(expr) && expr[next] == '(':
				// a function or an aggregation
			default:
				sel := Selector{Name: word}
				if next < len(expr) && expr[next] == '{' {
					ls, k, err := matchers(expr, next)
					if err != nil {
						return nil, err
					}
					for _, l := range ls {
						sel.Labels = append(sel.Labels, l.name)
					}
					j = k
				}
				out = append(out, sel)
			}
			i = j
		default:
			i++ // operators and punctuation
		}
	}
	return out, nil
}

type matcher struct{ name, value string }

// matchers reads the label matchers of {…} starting at expr[i] == '{' and
// returns them with the index just past the closing brace.
func matchers(expr string, i int) ([]matcher, int, error) {
	var out []matcher
	i++
	for {
		i = skipSpace(expr, i)
		if i >= len(expr) {
			return nil, 0, fmt.Errorf("unclosed {")
		}
		switch expr[i] {
		case '}':
			return out, i + 1, nil
		case ',':
			i++
			continue
		}
		j := i
		for j < len(expr) && isNameChar(expr[j]) {
			j++
		}
		if j == i {
			return nil, 0, fmt.Errorf("label name expected at %d", i)
		}
		m := matcher{name: expr[i:j]}
		j = skipSpace(expr, j)
		for j < len(expr) && strings.IndexByte("=!~", expr[j]) >= 0 {
			j++
		}
		j = skipSpace(expr, j)
		k, err := skipString(expr, j)
		if err != nil {
			return nil, 0, fmt.Errorf("label %s: %w", m.name, err)
		}
		m.value = expr[j+1 : k-1]
		out = append(out, m)
		i = k
	}
}

func skipString(expr string, i int) (int, error) {
	if i >= len(expr) || strings.IndexByte("\"'`", expr[i]) < 0 {
		return 0, fmt.Errorf("string expected at %d", i)
	}
	q := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch expr[j] {
		case '\\':
			if q != '`' {
				j++
			}
		case q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unclosed string at %d", i)
}

func skipVariable(expr string, i int) int {
	i++
	if i < len(expr) && expr[i] == '{' {
		if j := strings.IndexByte(expr[i:], '}'); j >= 0 {
			return i + j + 1
		}
		return len(expr)
	}
	for i < len(expr) && isNameChar(expr[i]) {
		i++
	}
	return i
}

// skipNumber passes a number or a duration: 0.99, 1e-06, 0x1f, 5m, 1h30m.
func skipNumber(expr string, i int) int {
	for i < len(expr) {
		c := expr[i]
		switch {
		case isNameChar(c) || c == '.':
			i++
		case (c == '-' || c == '+') && (expr[i-1] == 'e' || expr[i-1] == 'E'):
			i++
		default:
			return i
		}
	}
	return i
}

func skipSpace(expr string, i int) int {
	for i < len(expr) && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
		i++
	}
	return i
}

func isDigit(c byte) bool     { return c >= '0' && c <= '9' }
func isNameStart(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isNameChar(c byte) bool  { return isNameStart(c) || isDigit(c) }
