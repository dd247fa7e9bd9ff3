package bench

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"
)

const testTarget = "ws://127.0.0.1:8080/ws"

func TestNormalizeDefaults(t *testing.T) {
	tests := []struct {
		scenario             Scenario
		conns, k, topics     int
		rate                 float64
		duration             time.Duration
		workers, concurrency int
	}{
		{ScenarioIdle, 15000, 10, 15000, 0, 3 * time.Second, 2, 64},
		{ScenarioConnect, 15000, -1, 0, 0, 0, 2, 128},
		{ScenarioLatency, 10000, 1, 1, 1, 10 * time.Second, 2, 64},
		{ScenarioFanout, 10000, 1, 1, 150, 10 * time.Second, 2, 64},
		{ScenarioSteps, 5000, 1, 1, 50, 0, 2, 64},
		{ScenarioTopics, 15000, 100, 15000, 200, 10 * time.Second, 2, 64},
		{ScenarioChurn, 2000, 10, 2000, 0, 0, 2, 64},
		{ScenarioHol, 11000, 1, 1001, 100, 10 * time.Second, 2, 64},
		{ScenarioRecover, 10000, 1, 1, 20, 30 * time.Second, 2, 64},
		{ScenarioJoinStorm, 10000, 1, 1, 20, 5 * time.Second, 2, 64},
	}
	for _, tt := range tests {
		t.Run(string(tt.scenario), func(t *testing.T) {
			p, err := Params{Scenario: tt.scenario, Targets: []string{testTarget}}.Normalize()
			if err != nil {
				t.Fatal(err)
			}
			if p.Conns != tt.conns || p.TopicsPerConn != tt.k || p.Topics != tt.topics {
				t.Errorf("conns, k, topics = %d, %d, %d; want %d, %d, %d", p.Conns, p.TopicsPerConn, p.Topics, tt.conns, tt.k, tt.topics)
			}
			if p.Rate != tt.rate || p.Duration != tt.duration {
				t.Errorf("rate, duration = %v, %v; want %v, %v", p.Rate, p.Duration, tt.rate, tt.duration)
			}
			if p.Workers != tt.workers || p.ConnectConcurrency != tt.concurrency {
				t.Errorf("workers, concurrency = %d, %d; want %d, %d", p.Workers, p.ConnectConcurrency, tt.workers, tt.concurrency)
			}
			if p.Name != string(tt.scenario) || p.Timeout <= 0 || p.PublishVia != "http" || p.Transport != TransportWS {
				t.Errorf("name %q, timeout %v, via %q, transport %q", p.Name, p.Timeout, p.PublishVia, p.Transport)
			}
		})
	}
}

func TestNormalizeKeepsExplicitValues(t *testing.T) {
	p, err := Params{
		Scenario: ScenarioTopics, Targets: []string{testTarget}, Conns: 400, TopicsPerConn: 20, Topics: 50,
		Rate: 7, Duration: time.Second, Workers: 3, LossLimit: 0.01, Name: "mine",
	}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if p.Conns != 400 || p.TopicsPerConn != 20 || p.Topics != 50 || p.Rate != 7 || p.Duration != time.Second ||
		p.Workers != 3 || p.LossLimit != 0.01 || p.Name != "mine" {
		t.Fatalf("explicit values changed: %+v", p)
	}
}

func TestNormalizeErrors(t *testing.T) {
	ok := func() Params { return Params{Scenario: ScenarioLatency, Targets: []string{testTarget}, Conns: 100} }
	tests := []struct {
		name string
		edit func(*Params)
		want error
	}{
		{"unknown scenario", func(p *Params) { p.Scenario = "flood" }, ErrUnknownScenario},
		{"no target", func(p *Params) { p.Targets = nil }, ErrBadParams},
		{"target and spawn", func(p *Params) { p.Spawn = "bin/subsock" }, ErrBadParams},
		{"remote target", func(p *Params) { p.Targets = []string{"ws://10.0.0.1:8080/ws"} }, ErrNotLoopback},
		{"hostname target", func(p *Params) { p.Targets = []string{"ws://example.com/ws"} }, ErrNotLoopback},
		{"wss target", func(p *Params) { p.Targets = []string{"wss://127.0.0.1/ws"} }, ErrBadParams},
		{"more topics per conn than topics", func(p *Params) { p.TopicsPerConn, p.Topics = 5, 2 }, ErrBadParams},
		{"publishing without subscriptions", func(p *Params) { p.TopicsPerConn = -1 }, ErrBadParams},
		{"negative rate", func(p *Params) { p.Rate = -1 }, ErrBadParams},
		{"too many per worker", func(p *Params) { p.Conns, p.Workers = 16000, 1 }, ErrBadParams},
		{"too many per node", func(p *Params) { p.Conns, p.Workers = 20000, 2 }, ErrBadParams},
		{"bad publish transport", func(p *Params) { p.PublishVia = "udp" }, ErrBadParams},
		{"steps factor", func(p *Params) { p.Scenario, p.StepFactor = ScenarioSteps, 0.5 }, ErrBadParams},
		{"oversized payload", func(p *Params) { p.PayloadSize = 1 << 20 }, ErrBadParams},
		{"bad topic prefix", func(p *Params) { p.TopicPrefix = `a"b` }, ErrBadParams},
		{"empty prefix segment", func(p *Params) { p.TopicPrefix = "a..b" }, ErrBadParams},
		{"hot subs outside hol", func(p *Params) { p.HotSubs = 10 }, ErrBadParams},
		{"hol without small topics", func(p *Params) { p.Scenario, p.HotSubs = ScenarioHol, 100 }, ErrBadParams},
		{"hol with two topics per conn", func(p *Params) { p.Scenario, p.HotSubs, p.TopicsPerConn = ScenarioHol, 50, 2 }, ErrBadParams},
		{"hol remote redis", func(p *Params) { p.Scenario, p.HotSubs, p.Redis = ScenarioHol, 50, "10.0.0.1:6379" }, ErrNotLoopback},
		{"cuts outside recover", func(p *Params) { p.CutFraction = 0.1 }, ErrBadParams},
		{"backbone outside recover", func(p *Params) { p.Backbone = BackboneRedis }, ErrBadParams},
		{"recover on nats", func(p *Params) { p.Scenario, p.Backbone = ScenarioRecover, "nats" }, ErrBadParams},
		{"recover cuts more than all", func(p *Params) { p.Scenario, p.CutFraction = ScenarioRecover, 1.5 }, ErrBadParams},
		{"recover with two topics per conn", func(p *Params) { p.Scenario, p.TopicsPerConn, p.Topics = ScenarioRecover, 2, 2 }, ErrBadParams},
		{"recover over ws", func(p *Params) { p.Scenario, p.PublishVia = ScenarioRecover, "ws" }, ErrBadParams},
		{"unknown transport", func(p *Params) { p.Transport = "longpoll" }, ErrBadParams},
		{"sse connect", func(p *Params) { p.Scenario, p.Transport = ScenarioConnect, TransportSSE }, ErrBadParams},
		{"sse recover", func(p *Params) { p.Scenario, p.Transport = ScenarioRecover, TransportSSE }, ErrBadParams},
		{"sse over the request limit", func(p *Params) { p.Transport, p.TopicsPerConn, p.Topics = TransportSSE, 300, 300 }, ErrBadParams},
		{"sse with a comma in the prefix", func(p *Params) { p.Transport, p.TopicPrefix = TransportSSE, "a,b" }, ErrBadParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok()
			tt.edit(&p)
			if _, err := p.Normalize(); !errors.Is(err, tt.want) {
				t.Fatalf("Normalize() = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := ok().Normalize(); err != nil {
		t.Fatalf("the base case must be valid: %v", err)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, p Params)
		wantErr error
	}{
		{
			name: "targets repeated and comma-separated",
			args: []string{"-scenario", "fanout", "-target", "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws", "-target", "ws://localhost:3/ws", "-conns", "90"},
			check: func(t *testing.T, p Params) {
				want := []string{"ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws", "ws://localhost:3/ws"}
				if !slices.Equal(p.Targets, want) || p.Conns != 90 || p.Rate != 150 {
					t.Errorf("targets %v conns %d rate %v", p.Targets, p.Conns, p.Rate)
				}
			},
		},
		{
			name: "node flags after --",
			args: []string{"-scenario", "idle", "-spawn", "bin/subsock", "-spawn-env", "GOGC=50,GOMEMLIMIT=1GiB", "--", "-loops", "2", "-max-pending", "4096"},
			check: func(t *testing.T, p Params) {
				if !slices.Equal(p.SpawnArgs, []string{"-loops", "2", "-max-pending", "4096"}) {
					t.Errorf("spawn args %v", p.SpawnArgs)
				}
				if !slices.Equal(p.SpawnEnv, []string{"GOGC=50", "GOMEMLIMIT=1GiB"}) {
					t.Errorf("spawn env %v", p.SpawnEnv)
				}
			},
		},
		{
			name: "steps flags",
			args: []string{"-scenario", "steps", "-target", testTarget, "-rate", "10", "-step-factor", "2", "-max-steps", "3", "-step-duration", "500ms", "-p99-limit", "250ms"},
			check: func(t *testing.T, p Params) {
				if p.Rate != 10 || p.StepFactor != 2 || p.MaxSteps != 3 || p.StepDuration != 500*time.Millisecond || p.P99Limit != 250*time.Millisecond {
					t.Errorf("%+v", p)
				}
			},
		},
		{
			name: "recover flags",
			args: []string{"-scenario", "recover", "-target", testTarget, "-backbone", "redis", "-cut-fraction", "0.25", "-cut-every", "500ms", "-history-size", "300"},
			check: func(t *testing.T, p Params) {
				if p.Backbone != BackboneRedis || p.CutFraction != 0.25 || p.CutEvery != 500*time.Millisecond || p.HistorySize != 300 || p.RedisServer != "redis-server" {
					t.Errorf("%+v", p)
				}
			},
		},
		{
			name: "joinstorm defaults",
			args: []string{"-scenario", "joinstorm", "-target", testTarget},
			check: func(t *testing.T, p Params) {
				if p.TopicPrefix != "storm" || p.ConnectRate != 2000 || p.P99Limit != 50*time.Millisecond ||
					p.JoinLeaveMax != 1000 || !p.PresenceStats || p.Conns != 10000 || p.Duration != 5*time.Second {
					t.Errorf("%+v", p)
				}
			},
		},
		{
			name: "joinstorm takes the spawned node's cut-off",
			args: []string{"-scenario", "joinstorm", "-spawn", "bin/subsock", "-conns", "300", "-duration", "2s", "--", "-join-leave-max", "50"},
			check: func(t *testing.T, p Params) {
				if p.JoinLeaveMax != 50 || p.ConnectRate != 150 || p.Workers != 1 {
					t.Errorf("%+v", p)
				}
			},
		},
		{
			name: "joinstorm explicit",
			args: []string{"-scenario", "joinstorm", "-target", testTarget, "-join-leave-max", "20", "-connect-rate", "100", "-p99-limit", "1s"},
			check: func(t *testing.T, p Params) {
				if p.JoinLeaveMax != 20 || p.ConnectRate != 100 || p.P99Limit != time.Second {
					t.Errorf("%+v", p)
				}
			},
		},
		{
			name: "presence on the spawned node asks presence_stats",
			args: []string{"-scenario", "latency", "-spawn", "bin/subsock", "--", "-presence", "bench.>"},
			check: func(t *testing.T, p Params) {
				if !p.PresenceStats {
					t.Errorf("%+v", p)
				}
			},
		},
		{
			name: "no presence, no presence_stats",
			args: []string{"-scenario", "latency", "-spawn", "bin/subsock", "--", "-join-leave", "bench.>"},
			check: func(t *testing.T, p Params) {
				if p.PresenceStats {
					t.Errorf("%+v", p)
				}
			},
		},
		{
			name: "joinstorm control",
			args: []string{"-scenario", "joinstorm", "-spawn", "bin/subsock", "-no-presence"},
			check: func(t *testing.T, p Params) {
				if !p.NoPresence || p.PresenceStats {
					t.Errorf("%+v", p)
				}
			},
		},
		{name: "no-presence elsewhere", args: []string{"-scenario", "latency", "-target", testTarget, "-no-presence"}, wantErr: ErrBadParams},
		{name: "joinstorm over several topics", args: []string{"-scenario", "joinstorm", "-target", testTarget, "-topics", "2"}, wantErr: ErrBadParams},
		{name: "joinstorm over SSE", args: []string{"-scenario", "joinstorm", "-target", testTarget, "-transport", "sse"}, wantErr: ErrBadParams},
		{name: "join-leave-max elsewhere", args: []string{"-scenario", "latency", "-target", testTarget, "-join-leave-max", "5"}, wantErr: ErrBadParams},
		{
			name: "recover defaults",
			args: []string{"-scenario", "recover", "-target", testTarget, "-conns", "200"},
			check: func(t *testing.T, p Params) {
				if p.Backbone != BackboneMemory || p.CutFraction != 0.1 || p.CutEvery != time.Second || p.HistorySize != 2000 || p.usesRedis() {
					t.Errorf("%+v", p)
				}
			},
		},
		{name: "node flags without spawn", args: []string{"-target", testTarget, "--", "-loops", "2"}, wantErr: ErrBadParams},
		{name: "stray argument", args: []string{"-target", testTarget, "extra"}, wantErr: ErrBadParams},
		{name: "unknown scenario", args: []string{"-target", testTarget, "-scenario", "nope"}, wantErr: ErrUnknownScenario},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Params
			fs := NewFlagSet("test", &p)
			fs.SetOutput(io.Discard)
			err := ParseArgs(fs, &p, tt.args)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseArgs = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
		})
	}
}

func TestTopicSubs(t *testing.T) {
	tests := []struct {
		name   string
		p      Params
		failed []int
		want   []int64
	}{
		{"one topic", Params{Conns: 5, TopicsPerConn: 1, Topics: 1}, nil, []int64{5}},
		{"one topic, failures", Params{Conns: 5, TopicsPerConn: 1, Topics: 1}, []int{0, 3}, []int64{3}},
		{"spread", Params{Conns: 4, TopicsPerConn: 2, Topics: 4}, nil, []int64{2, 2, 2, 2}},
		{"spread, failure", Params{Conns: 4, TopicsPerConn: 2, Topics: 4}, []int{1}, []int64{2, 2, 1, 1}},
		{"wraps", Params{Conns: 3, TopicsPerConn: 3, Topics: 4}, nil, []int64{3, 2, 2, 2}},
		{"none", Params{Conns: 3, TopicsPerConn: -1}, nil, nil},
		{"hot and small", Params{Conns: 7, TopicsPerConn: 1, Topics: 4, HotSubs: 4}, nil, []int64{4, 1, 1, 1}},
		{"hot and small, failures", Params{Conns: 7, TopicsPerConn: 1, Topics: 4, HotSubs: 4}, []int{0, 5}, []int64{3, 1, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := topicSubs(tt.p, tt.failed); !slices.Equal(got, tt.want) {
				t.Fatalf("topicSubs = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFlagValue(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-addr", ":9"}, ":9"},
		{[]string{"--addr=127.0.0.1:9", "-loops", "2"}, "127.0.0.1:9"},
		{[]string{"-loops", "2", "-addr=:7"}, ":7"},
		{[]string{"-loops", "2"}, ""},
		{[]string{"-addr"}, ""},
	}
	for _, tt := range tests {
		if got := flagValue(tt.args, "addr"); got != tt.want {
			t.Errorf("flagValue(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestSpawnRefusesNonLoopbackAddr(t *testing.T) {
	_, err := spawnNode(t.Context(), "/nonexistent/subsock", []string{"-addr", "192.0.2.1:8080"}, nil, io.Discard)
	if !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("spawnNode = %v, want ErrNotLoopback before anything starts", err)
	}
}

func TestHolDefaultsFollowConns(t *testing.T) {
	p, err := Params{Scenario: ScenarioHol, Targets: []string{testTarget}, Conns: 300, HotSubs: 200}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if p.Topics != 101 || p.SmallRate != 10 || p.Rate != 100 || p.RedisServer != "redis-server" {
		t.Fatalf("topics %d, small rate %v, rate %v, redis-server %q", p.Topics, p.SmallRate, p.Rate, p.RedisServer)
	}
}
