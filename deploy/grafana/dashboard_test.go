// Package grafana holds the subsock dashboard (subsock.json) and the test
// that keeps it importable and true to what a node exports.
package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/subsock/subsock/deploy/prometheus/promcheck"
)

const dsUID = "${DS_PROMETHEUS}"

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Datasource *datasource `json:"datasource"`
	Expr       string      `json:"expr"`
	RefID      string      `json:"refId"`
}

type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *datasource `json:"datasource"`
	GridPos     *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // a collapsed row's panels
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *datasource     `json:"datasource"`
	Query      json.RawMessage `json:"query"`
}

type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	SchemaVersion int     `json:"schemaVersion"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

func load(t *testing.T) (*dashboard, []panel) {
	t.Helper()
	b, err := os.ReadFile("subsock.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("subsock.json: %v", err)
	}
	var all []panel
	for _, p := range d.Panels {
		all = append(all, p)
		all = append(all, p.Panels...)
	}
	return &d, all
}

// TestDashboardImportable checks what Grafana needs to import the
// dashboard on any instance: a recent schema, the Prometheus data source
// as an input that every query uses, and the instance variable.
func TestDashboardImportable(t *testing.T) {
	d, panels := load(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want >= 36", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both needed", d.UID, d.Title)
	}
	hasInput := false
	for _, in := range d.Inputs {
		if in.Name == "DS_PROMETHEUS" && in.Type == "datasource" && in.PluginID == "prometheus" {
			hasInput = true
		}
	}
	if !hasInput {
		t.Errorf("no DS_PROMETHEUS datasource input in __inputs")
	}

	var inst *variable
	for i, v := range d.Templating.List {
		if v.Name == "instance" {
			inst = &d.Templating.List[i]
		}
	}
	if inst == nil {
		t.Fatalf("no instance template variable")
	}
	if inst.Type != "query" || inst.Datasource == nil || inst.Datasource.UID != dsUID {
		t.Errorf("instance variable: type %q, datasource %+v; want a query on %s", inst.Type, inst.Datasource, dsUID)
	}

	ids := map[int]string{}
	for _, p := range panels {
		if prev, ok := ids[p.ID]; ok || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or already used by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Description == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != dsUID {
			t.Errorf("panel %q: datasource %+v, want %s", p.Title, p.Datasource, dsUID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != dsUID || tg.RefID == "" || tg.Expr == "" {
				t.Errorf("panel %q: query %+v needs datasource %s, a refId and an expr", p.Title, tg, dsUID)
			}
		}
	}
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// TestDashboardMetricsExported checks every query against the series a
// real node exports: each metric must exist, carry every label a matcher
// names, and be narrowed to the selected instances.
func TestDashboardMetricsExported(t *testing.T) {
	d, panels := load(t)
	exported := promcheck.Exported(t)
	used := map[string]bool{}

	check := func(where, expr string, needInstance bool) {
		t.Helper()
		sels, err := promcheck.Selectors(expr)
		if err != nil {
			t.Errorf("%s: %q: %v", where, expr, err)
			return
		}
		if len(sels) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, s := range sels {
			used[s.Name] = true
			if !exported.Has(s.Name) {
				t.Errorf("%s: %s is not exported by a node", where, s.Name)
				continue
			}
			hasInstance := false
			for _, l := range s.Labels {
				hasInstance = hasInstance || l == "instance"
				if !exported.HasLabel(s.Name, l) {
					t.Errorf("%s: %s has no label %q", where, s.Name, l)
				}
			}
			if needInstance && !hasInstance {
				t.Errorf("%s: %s is not filtered by $instance", where, s.Name)
			}
		}
	}

	for _, v := range d.Templating.List {
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			// older dashboards store the query as a plain string
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
			}
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		check("variable "+v.Name, m[1], false)
		sels, _ := promcheck.Selectors(m[1])
		for _, s := range sels {
			if !exported.HasLabel(s.Name, m[2]) {
				t.Errorf("variable %s: %s has no label %q", v.Name, s.Name, m[2])
			}
		}
	}
	for _, p := range panels {
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr, true)
		}
	}

	// What the dashboard is for: each of these must be on it.
	for _, name := range []string{
		"subsock_transport_connections", "subsock_subscriptions", "subsock_topics",
		"subsock_messages_out_total", "subsock_messages_in_total", "subsock_write_syscalls_total",
		"subsock_fanout_duration_seconds_bucket", "subsock_slow_consumer_closes_total",
		"subsock_heartbeat_closes_total", "subsock_broker_errors_total", "subsock_broker_reconnects_total",
		"subsock_publish_errors_total", "subsock_subscribe_failures_total", "subsock_history_recovered_total",
		"subsock_upgrade_rejects_total", "up",
	} {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// grafanaVars stand in for the dashboard's variables so that Prometheus
// can parse its queries.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "${instance}", ".+", "$instance", ".+")

// TestDashboardQueriesParse has Prometheus's own parser read every query:
// each becomes a recording rule that promtool checks.
func TestDashboardQueriesParse(t *testing.T) {
	_, panels := load(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range panels {
		for _, tg := range p.Targets {
			n++
			expr, err := json.Marshal(grafanaVars.Replace(tg.Expr)) // a JSON string is a YAML string
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "      - record: dashboard_query_%d # %s\n        expr: %s\n", n, p.Title, expr)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "queries.yml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := promcheck.Promtool(t, dir, "check", "rules", "queries.yml")
	if want := fmt.Sprintf("SUCCESS: %d rules found", n); !strings.Contains(out, want) {
		t.Errorf("promtool check rules: want %q in\n%s", want, out)
	}
}
