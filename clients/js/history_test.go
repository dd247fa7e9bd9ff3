package js_test

import (
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/subsock/subsock/clients/js"
	"github.com/subsock/subsock/demo/browsertest"
	"github.com/subsock/subsock/gateway"
	"github.com/subsock/subsock/internal/testserver"
)

// historyRule parses a -history value for a test node.
func historyRule(t *testing.T, s string) []gateway.HistoryRule {
	t.Helper()
	r, err := gateway.ParseHistoryRule(s)
	if err != nil {
		t.Fatal(err)
	}
	return []gateway.HistoryRule{r}
}

// recoverEvent is the argument of the client's 'recover' event.
type recoverEvent struct {
	Topic     string `json:"topic"`
	Recovered bool   `json:"recovered"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
}

// TestClientHistoryAcrossRestartsInChromium restarts real nodes under the browser client
// (testdata/restart.js), between steps the page runs:
//   - a node on Redis restarts (1001) while a publisher on another node of the same Redis
//     keeps publishing: the subscriber resumes from its position and ends up with every offset
//     exactly once, in order, after one recover event that says recovered;
//   - a node on the in-memory broker restarts, so its streams lose their past: the client
//     reports it with recovered false and continues in the new epoch.
func TestClientHistoryAcrossRestartsInChromium(t *testing.T) {
	redis := testserver.Redis(t)
	rules := historyRule(t, "test.h.>=10000,1m")
	anon := gateway.SecurityConfig{AnonymousSubs: []string{"test.>"}, AnonymousPubs: []string{"test.>"}}
	home := browsertest.StartNode(t, gateway.Config{Broker: redis.URL, History: rules, Security: anon}, map[string]http.Handler{
		"/js/": http.StripPrefix("/js/", http.FileServerFS(js.FS())),
		"/t/":  http.StripPrefix("/t/", http.FileServer(http.Dir("testdata"))),
	})
	// The page is served by home, so the other nodes must allow its origin.
	anon.AllowedOrigins = home.Addr()
	restarted := browsertest.StartNode(t, gateway.Config{Broker: redis.URL, History: rules, Security: anon}, nil)
	memory := browsertest.StartNode(t, gateway.Config{History: rules, Security: anon}, nil)

	tab := browsertest.NewTab(t)
	tab.Do("open the page", 30*time.Second, chromedp.Navigate(home.URL()+"/t/restart.html?redis="+restarted.Addr()+"&memory="+memory.Addr()))
	tab.Wait("the page's steps", `window.stepsReady === true`, 10*time.Second)

	t.Run("redis node restart", func(t *testing.T) {
		before := browsertest.Eval[int](tab, `steps.redisBegin()`)
		restarted.Restart()
		got := browsertest.Eval[struct {
			Offsets   []uint64       `json:"offsets"`
			Data      []uint64       `json:"data"`
			Recovers  []recoverEvent `json:"recovers"`
			Last      uint64         `json:"last"`
			PubErrors []string       `json:"pubErrors"`
		}](tab, `steps.redisEnd()`)
		t.Logf("%d messages before the restart, %d in all, publish errors %q", before, len(got.Offsets), got.PubErrors)
		want := make([]uint64, got.Last)
		for i := range want {
			want[i] = uint64(i + 1) // a fresh topic: offsets from 1
		}
		if !slices.Equal(got.Offsets, want) {
			t.Errorf("offsets received: %v\nwant 1..%d once each, in order", compact(got.Offsets), got.Last)
		}
		// Each publication carries its sequence number; a publish that failed and was
		// retried would repeat one, under a new offset.
		if len(got.PubErrors) == 0 && !slices.Equal(got.Data, want) {
			t.Errorf("data received: %v, want 1..%d", compact(got.Data), got.Last)
		}
		if len(got.Recovers) != 1 || !got.Recovers[0].Recovered || got.Recovers[0].Epoch == "" {
			t.Errorf("recover events %+v, want one that recovered", got.Recovers)
		}
	})

	t.Run("memory node restart changes the epoch", func(t *testing.T) {
		epoch := browsertest.Eval[string](tab, `steps.memoryBegin()`)
		memory.Restart()
		got := browsertest.Eval[struct {
			Offsets  []uint64       `json:"offsets"`
			Data     []int          `json:"data"`
			Recovers []recoverEvent `json:"recovers"`
			Position struct {
				Offset uint64 `json:"offset"`
				Epoch  string `json:"epoch"`
			} `json:"position"`
		}](tab, `steps.memoryEnd()`)
		if len(got.Recovers) != 1 || got.Recovers[0].Recovered || got.Recovers[0].Epoch == epoch || got.Recovers[0].Epoch == "" {
			t.Errorf("recover events %+v, want one not recovered, in an epoch other than %q", got.Recovers, epoch)
		}
		if want := []uint64{1, 2, 3, 4, 5, 1}; !slices.Equal(got.Offsets, want) {
			t.Errorf("offsets %v, want %v", got.Offsets, want)
		}
		if want := []int{1, 2, 3, 4, 5, 6}; !slices.Equal(got.Data, want) {
			t.Errorf("data %v, want %v", got.Data, want)
		}
		if len(got.Recovers) == 1 && (got.Position.Offset != 1 || got.Position.Epoch != got.Recovers[0].Epoch) {
			t.Errorf("position %+v, want offset 1 in epoch %q", got.Position, got.Recovers[0].Epoch)
		}
	})
	if ex := tab.Exceptions(); len(ex) > 0 {
		t.Errorf("uncaught exceptions on the page: %q", ex)
	}
}

// compact shows a sequence of offsets as runs: [1-57 59-80].
func compact(s []uint64) []string {
	var out []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if j > i {
			out = append(out, strconv.FormatUint(s[i], 10)+"-"+strconv.FormatUint(s[j], 10))
		} else {
			out = append(out, strconv.FormatUint(s[i], 10))
		}
		i = j + 1
	}
	return out
}
