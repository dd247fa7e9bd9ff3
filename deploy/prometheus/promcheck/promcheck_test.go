package promcheck

import (
	"reflect"
	"strings"
	"testing"
)

func TestSelectors(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want []Selector
	}{
		{"bare", "subsock_connections", []Selector{{Name: "subsock_connections"}}},
		{"rate with grafana interval", `rate(subsock_messages_out_total{instance=~"$instance"}[$__rate_interval])`,
			[]Selector{{Name: "subsock_messages_out_total", Labels: []string{"instance"}}}},
		{"aggregation by before", `sum by (instance, le) (rate(a_bucket[5m]))`, []Selector{{Name: "a_bucket"}}},
		{"aggregation by after", `histogram_quantile(0.99, sum(rate(a_bucket[5m])) by (le))`, []Selector{{Name: "a_bucket"}}},
		{"binary with matching", `a / on (instance) group_left (job) b > bool 0.5`, []Selector{{Name: "a"}, {Name: "b"}}},
		{"set operators", `a > 0 unless on(instance) b or c and d`, []Selector{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}}},
		{"numbers and durations", `a offset 1h30m > 1e-06 * 0x1f + .5`, []Selector{{Name: "a"}}},
		{"strings hold no names", `label_replace(a, "dst", "$1 foo", "src", "(.*)")`, []Selector{{Name: "a"}}},
		{"matchers with commas and escapes", `a{transport="sse", x!~"q\"b}"}`, []Selector{{Name: "a", Labels: []string{"transport", "x"}}}},
		{"name matcher", `{__name__="a", job="j"}`, []Selector{{Name: "a", Labels: []string{"job"}}}},
		{"variables", `a{instance=~"${instance}"} * ${factor}`, []Selector{{Name: "a", Labels: []string{"instance"}}}},
		{"without", `max without (instance) (a)`, []Selector{{Name: "a"}}},
		{"comment", "a # b\n + c", []Selector{{Name: "a"}, {Name: "c"}}},
		{"colon names", `job:a:rate5m`, []Selector{{Name: "job:a:rate5m"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Selectors(tt.expr)
			if err != nil {
				t.Fatalf("Selectors(%q): %v", tt.expr, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Selectors(%q) = %+v, want %+v", tt.expr, got, tt.want)
			}
		})
	}
}

func TestSelectorsErrors(t *testing.T) {
	for _, expr := range []string{`a{b="c"`, `rate(a[5m)`, `a{b="c}`, `{job="x"}`, `sum by (a`} {
		if _, err := Selectors(expr); err == nil {
			t.Errorf("Selectors(%q): no error", expr)
		}
	}
}

func TestParseExposition(t *testing.T) {
	const text = `# HELP h Time.
# TYPE h histogram
h_bucket{le="0.1"} 0
h_bucket{le="+Inf"} 0
h_sum 0
h_count 0
g{transport="sse"} 1
g{transport="websocket"} 2
c 3
`
	s, err := ParseExposition(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Names(), []string{"c", "g", "h_bucket", "h_count", "h_sum"}; !reflect.DeepEqual(got, want) {
		t.Errorf("names = %v, want %v", got, want)
	}
	for _, c := range []struct {
		name, label string
		want        bool
	}{
		{"h_bucket", "le", true}, {"g", "transport", true}, {"g", "instance", true},
		{"c", "transport", false}, {"h_sum", "le", false},
	} {
		if got := s.HasLabel(c.name, c.label); got != c.want {
			t.Errorf("HasLabel(%s, %s) = %v, want %v", c.name, c.label, got, c.want)
		}
	}
	if !s.Has("up") || s.Has("h") {
		t.Errorf("Has: up is synthetic, h is not a series")
	}
}

func TestExported(t *testing.T) {
	s := Exported(t)
	for _, name := range []string{"subsock_connections", "subsock_fanout_duration_seconds_bucket", "go_goroutines"} {
		if !s.Has(name) {
			t.Errorf("a node exports no %s; it has %v", name, s.Names())
		}
	}
	if !s.HasLabel("subsock_transport_connections", "transport") {
		t.Errorf("subsock_transport_connections has no transport label")
	}
}
