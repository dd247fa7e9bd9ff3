// Package prometheus holds the alerting rules for subsock nodes
// (alerts.yml), their promtool unit tests (alerts_test.yml), an example
// scrape configuration (prometheus.yml), and the tests that run promtool
// on them and keep every rule true to what a node exports.
package prometheus

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/subsock/subsock/deploy/prometheus/promcheck"
)

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	return promcheck.Promtool(t, ".", args...)
}

func TestPromtoolCheckRules(t *testing.T) {
	out := promtool(t, "check", "rules", "alerts.yml")
	m := regexp.MustCompile(`SUCCESS: (\d+) rules found`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("promtool check rules: no rule count in\n%s", out)
	}
	// The count also checks readRules below, which the other tests trust.
	if n, _ := strconv.Atoi(m[1]); n != len(readRules(t)) {
		t.Errorf("promtool found %d rules, readRules %d", n, len(readRules(t)))
	}
}

func TestPromtoolTestRules(t *testing.T) { promtool(t, "test", "rules", "alerts_test.yml") }

func TestPromtoolCheckConfig(t *testing.T) { promtool(t, "check", "config", "prometheus.yml") }

// TestRulesWellFormed checks what an operator needs from each alert: a
// for: so one bad scrape pages nobody, a severity to route on, and
// annotations that say what is wrong and where to look.
func TestRulesWellFormed(t *testing.T) {
	for _, r := range readRules(t) {
		if !strings.HasPrefix(r.alert, "Subsock") {
			t.Errorf("%s: alert names start with Subsock", r.alert)
		}
		if r.expr == "" || r.for_ == "" {
			t.Errorf("%s: expr %q, for %q: both needed", r.alert, r.expr, r.for_)
		}
		if s := r.labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", r.alert, s)
		}
		if r.annotations["summary"] == "" {
			t.Errorf("%s: no summary", r.alert)
		}
		d := r.annotations["description"]
		if !strings.Contains(d, "README.md") && !strings.Contains(d, "docs/") {
			t.Errorf("%s: description %q points to no README.md or docs/ section", r.alert, d)
		}
	}
}

// TestRulesMetricsExported checks every selector in the rules against the
// series a real node exports, labels included.
func TestRulesMetricsExported(t *testing.T) {
	exported := promcheck.Exported(t)
	for _, r := range readRules(t) {
		sels, err := promcheck.Selectors(r.expr)
		if err != nil {
			t.Errorf("%s: %v", r.alert, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: expression selects no metric", r.alert)
		}
		for _, s := range sels {
			if !exported.Has(s.Name) {
				t.Errorf("%s: %s is not exported by a node", r.alert, s.Name)
				continue
			}
			for _, l := range s.Labels {
				if !exported.HasLabel(s.Name, l) {
					t.Errorf("%s: %s has no label %q", r.alert, s.Name, l)
				}
			}
		}
	}
}

// TestEveryAlertTested checks that alerts_test.yml has, for every alert,
// an evaluation where it fires and one where it must not.
func TestEveryAlertTested(t *testing.T) {
	f, err := os.Open("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fires, silent := map[string]bool{}, map[string]bool{}
	var name, exp string
	flush := func() {
		switch {
		case name == "":
		case exp == "[]":
			silent[name] = true
		case exp == "":
			fires[name] = true // exp_alerts: followed by a list
		}
		name, exp = "", "none"
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(stripComment(sc.Text()))
		switch {
		case strings.HasPrefix(line, "- eval_time:"):
			flush()
		case strings.HasPrefix(line, "alertname:"):
			name = strings.TrimSpace(strings.TrimPrefix(line, "alertname:"))
		case strings.HasPrefix(line, "exp_alerts:"):
			exp = strings.TrimSpace(strings.TrimPrefix(line, "exp_alerts:"))
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range readRules(t) {
		if !fires[r.alert] {
			t.Errorf("%s: no evaluation in alerts_test.yml where it fires", r.alert)
		}
		if !silent[r.alert] {
			t.Errorf("%s: no evaluation in alerts_test.yml where it must not fire (exp_alerts: [])", r.alert)
		}
	}
}

// rule is one alerting rule of alerts.yml.
type rule struct {
	alert, expr, for_   string
	labels, annotations map[string]string
}

// readRules reads the alerting rules of alerts.yml. It understands the
// YAML that file is written in (block mappings, "- alert:" items, quoted
// scalars and | or > block scalars) and no more; TestPromtoolCheckRules
// compares its count with promtool's, which parses the file for real.
func readRules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var rules []rule
	var cur *rule
	base := 0     // indent of the current rule's keys
	section := "" // "labels" or "annotations" while inside one
	for i := 0; i < len(lines); i++ {
		text := stripComment(lines[i])
		if strings.TrimSpace(text) == "" {
			continue
		}
		indent := len(text) - len(strings.TrimLeft(text, " "))
		body := strings.TrimSpace(text)
		if strings.HasPrefix(body, "- alert:") {
			rules = append(rules, rule{
				alert:  strings.TrimSpace(strings.TrimPrefix(body, "- alert:")),
				labels: map[string]string{}, annotations: map[string]string{},
			})
			cur, base, section = &rules[len(rules)-1], indent+2, ""
			continue
		}
		if cur == nil {
			continue
		}
		if indent < base {
			cur = nil
			continue
		}
		key, val, ok := strings.Cut(body, ":")
		if !ok {
			t.Fatalf("alerts.yml:%d: %q is not key: value", i+1, body)
		}
		val = strings.TrimSpace(val)
		if strings.HasPrefix(val, "|") || strings.HasPrefix(val, ">") {
			var block []string
			for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" ||
				len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent) {
				i++
				block = append(block, strings.TrimSpace(lines[i]))
			}
			sep := "\n"
			if val[0] == '>' {
				sep = " "
			}
			val = strings.TrimSpace(strings.Join(block, sep))
		} else if uq, err := strconv.Unquote(val); err == nil {
			val = uq
		} else if len(val) >= 2 && val[0] == '\'' && val[len(val)-1] == '\'' {
			val = strings.ReplaceAll(val[1:len(val)-1], "''", "'")
		}
		switch {
		case indent == base && (key == "labels" || key == "annotations"):
			section = key
		case indent == base:
			section = ""
			switch key {
			case "expr":
				cur.expr = val
			case "for":
				cur.for_ = val
			default:
				t.Fatalf("alerts.yml:%d: unknown rule key %q", i+1, key)
			}
		case section == "labels":
			cur.labels[key] = val
		case section == "annotations":
			cur.annotations[key] = val
		default:
			t.Fatalf("alerts.yml:%d: %q outside labels or annotations", i+1, body)
		}
	}
	if len(rules) == 0 {
		t.Fatal("alerts.yml: no rules")
	}
	return rules
}

// stripComment drops a comment that starts a line or follows a space
// outside quotes.
func stripComment(s string) string {
	var q byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '#' && (i == 0 || s[i-1] == ' '):
			return s[:i]
		}
	}
	return s
}
